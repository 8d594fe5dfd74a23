"""Time `prepare` on the synthetic market at the seed's scale on SQLite and PostgreSQL.

Each store gets a fresh root and runs prepare in a child process, so wall time and peak memory
(max RSS) are the child's alone. Prints a table and logs it to MLflow (experiment
nextday-bench).
    python scripts/bench_prepare.py                       # 1000 symbols x 5 years
    python scripts/bench_prepare.py data.n_symbols=200    # any extra Hydra overrides
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_postgres


def _child_run(overrides: list[str], root: Path, env: dict) -> dict:
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "nextday", "prepare", *overrides, f"paths.root={root}"], env=env
    )
    # wait4 gives this child's own resource usage (peak RSS in KiB on Linux)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"prepare failed with {overrides}")
    client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("nextday")
    metrics = client.search_runs([experiment.experiment_id])[0].data.metrics
    stages = {k.removeprefix("time_"): v for k, v in metrics.items() if k.startswith("time_")}
    return {
        "wall_s": wall,
        "peak_rss_gb": usage.ru_maxrss / 1024**2,
        "rows": int(metrics["rows"]),
        **{name.removesuffix("_s"): seconds for name, seconds in stages.items()},
    }


def main(extra: list[str]) -> pd.DataFrame:
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    overrides = ["experiment=full", *extra]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nextday-bench-") as folder:
        folder = Path(folder)
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        rows.append({"store": "sqlite", **_child_run(overrides, folder / "sqlite", env)})
        pg_url = os.environ.get("NEXTDAY_PG_URL")
        pg_folder = None
        if not pg_url:
            # its own top-level folder: the postgres user cannot enter our private temp dir
            pg_folder = Path(tempfile.mkdtemp(prefix="nextday-bench-pg-"))
            pg_url = local_postgres.start(pg_folder)
        try:
            env = {**env, "NEXTDAY_PG_URL": pg_url}
            rows.append(
                {
                    "store": "postgres",
                    **_child_run([*overrides, "store=postgres"], folder / "pg-root", env),
                }
            )
        finally:
            if pg_folder:
                local_postgres.stop(pg_folder)
                shutil.rmtree(pg_folder, ignore_errors=True)
    table = pd.DataFrame(rows).set_index("store")
    print(table.round(2).T.to_string())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("nextday-bench")
    with mlflow.start_run(run_name="bench-prepare"):
        mlflow.set_tag("nextday.step", "bench")
        mlflow.log_param("overrides", " ".join(overrides))
        mlflow.log_param("cpus", os.cpu_count())
        for store, row in table.iterrows():
            mlflow.log_metrics({f"{store}_{k}": float(v) for k, v in row.items()})
        mlflow.log_text(table.round(3).to_csv(), "bench_prepare.csv")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])

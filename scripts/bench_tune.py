"""Tuning throughput: trials per hour with and without pruning, and two workers against one.

Every study runs in `python -m nextday tune` worker processes against a throwaway PostgreSQL
(Optuna storage and MLflow tracking), on one prepared dataset per preset:
- pruning: the same seeded study (median pruner vs none), trials/hour and epochs run;
- workers: one worker running N trials vs two workers running N/2 each on one shared study.
The architecture (MLP) and batch size are fixed so that trial costs are comparable. Prints a table and
logs it to MLflow (experiment nextday-bench).
    python scripts/bench_tune.py                  # quick and default presets
    python scripts/bench_tune.py --presets quick --trials 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_postgres

PRESETS = {"quick": ["experiment=quick"], "default": ["tune.max_epochs=10"]}
# the MLP at batch 64 throughout: trial costs then differ little, so timings compare
SPACE = (
    "+tune.space={train.learning_rate:{low:1.0e-4,high:1.0e-2,log:true},"
    "train.huber_delta:{low:0.005,high:0.05,log:true},arch.layers.0:{choices:[32,64,128]},"
    "arch.dropout.0:{low:0.0,high:0.5},arch.dropout.1:{low:0.0,high:0.5}}"
)
FIXED = ["~tune.space", SPACE, "tune.retrain_best=false", "tune.sampler.n_startup_trials=3"]


def _database(server: str, name: str) -> str:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def _workers(n: int, trials_each: int, args: list[str], env: dict, cwd: Path) -> float:
    command = [sys.executable, "-m", "nextday", "tune", *args, f"tune.n_trials={trials_each}"]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(n)
    ]
    for process in processes:
        _, error = process.communicate()
        if process.returncode:
            raise SystemExit(f"worker failed: {error[-2000:]}")
    return time.perf_counter() - start


def _study_metrics(study: str) -> dict:
    runs = mlflow.search_runs(
        experiment_names=["nextday"],
        filter_string=f"tags.`nextday.study` = '{study}' and tags.`nextday.step` = 'tune'",
    )
    return {
        "trials": int(runs["metrics.trials_run"].sum()),
        "pruned": int(runs["metrics.trials_pruned"].sum()),
        "epochs": int(runs["metrics.epochs_run_total"].sum()),
        "epoch_budget": int(runs["metrics.epochs_budget"].sum()),
        "best_val": float(runs["metrics.best_value"].min()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    tracking_uri = os.environ.pop("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    rows = []
    root = Path(tempfile.mkdtemp(prefix="nextday-bench-tune-"))
    pg_folder = Path(tempfile.mkdtemp(prefix="nextday-bench-tune-pg-"))
    server = local_postgres.start(pg_folder)
    try:
        for preset in args.presets:
            tracking = _database(server, f"mlflow_{preset}")
            env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "TF_CPP_MIN_LOG_LEVEL": "2"}
            base = [*PRESETS[preset], f"paths.root={root / preset}", *FIXED]
            (root / preset).mkdir()
            subprocess.run(
                [sys.executable, "-m", "nextday", "prepare", *base],
                env=env,
                cwd=root / preset,
                check=True,
                capture_output=True,
            )
            mlflow.set_tracking_uri(tracking)
            storage = _database(server, f"optuna_{preset}")
            for label, workers, extra in (
                ("median pruner, 1 worker", 1, ["tune.pruner.kind=median"]),
                ("no pruner, 1 worker", 1, ["tune.pruner.kind=none"]),
                ("median pruner, 2 workers", 2, ["tune.pruner.kind=median"]),
            ):
                study = f"{preset}-{label.replace(' ', '').replace(',', '-')}"
                wall = _workers(
                    workers,
                    args.trials // workers,
                    [*base, *extra, f"tune.storage={storage}", f"tune.study_name={study}"],
                    env,
                    root / preset,
                )
                found = _study_metrics(study)
                rows.append(
                    {
                        "preset": preset,
                        "setup": label,
                        "wall_s": wall,
                        "trials_per_hour": found["trials"] / wall * 3600,
                        **found,
                    }
                )
    finally:
        local_postgres.stop(pg_folder)
        shutil.rmtree(pg_folder, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    table = pd.DataFrame(rows)
    table["epochs_share_run"] = table["epochs"] / table["epoch_budget"]
    print(f"{os.cpu_count()} CPUs, {args.trials} trials per setup")
    print(table.round(4).to_string(index=False))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("nextday-bench")
    with mlflow.start_run(run_name="bench-tune"):
        mlflow.set_tag("nextday.step", "bench")
        mlflow.log_params({"trials": args.trials, "presets": " ".join(args.presets)})
        for row in rows:
            key = f"{row['preset']}_{row['setup'].replace(' ', '_').replace(',', '')}"
            mlflow.log_metrics(
                {
                    f"{key}_trials_per_hour": row["trials_per_hour"],
                    f"{key}_wall_s": row["wall_s"],
                    f"{key}_epochs": row["epochs"],
                }
            )
        mlflow.log_text(table.round(4).to_csv(index=False), "bench_tune.csv")


if __name__ == "__main__":
    main()

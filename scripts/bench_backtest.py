"""Time a fixed-model backtest of one year of 1000 symbols (the issue's goal: under 60 s).

In a fresh root: prepare a synthetic market of 1000 symbols x 2 years whose test segment is
the last 60% of the dates (more than a year), fit a small normal model on the rest (2 epochs:
this measures the backtest, not the model), calibrate with 20 passes, export, then time
`backtest backtest.segments=[test]` in a child process, with the time of each of its stages
(predict, leak guard and costs, signal analytics, trading, forecast metrics, Sharpe intervals,
report). Prints a table and logs it to MLflow (experiment nextday-bench).
    python scripts/bench_backtest.py
    python scripts/bench_backtest.py data.n_symbols=200     # any extra Hydra overrides
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd

from nextday.pages import markdown

SETUP = [
    "data.n_symbols=1000",
    "data.years=2",
    "split.train=0.3",
    "split.val=0.1",
    "split.test=0.6",
]


def _step(step: str, overrides: list[str], root: Path, env: dict) -> tuple[float, float]:
    """Run one step in a child process; its wall time and peak RSS (GB)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "nextday", step, *overrides, f"paths.root={root}"], env=env
    )
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{step} failed with {overrides}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024**2


def main(extra: list[str]) -> pd.DataFrame:
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    common = [*SETUP, *extra]
    with tempfile.TemporaryDirectory(prefix="nextday-bench-") as folder:
        root = Path(folder)
        _step("prepare", common, root, env)
        _step("train", [*common, "model.max_epochs=2"], root, env)
        _step("calibrate", [*common, "calibrate.passes=20"], root, env)
        _step("export", [*common, "export.parity.mc_calls=5"], root, env)
        wall, rss = _step("backtest", [*common, "backtest.segments=[test]"], root, env)
        client = mlflow.MlflowClient(f"sqlite:///{root}/mlflow.db")
        experiment = client.get_experiment_by_name("nextday")
        run = client.search_runs(
            [experiment.experiment_id],
            "tags.`nextday.step` = 'backtest'",
            order_by=["attributes.start_time DESC"],
        )[0]
        metrics = run.data.metrics
    symbols = int([o for o in common if o.startswith("data.n_symbols=")][-1].split("=")[1])
    stages = {
        k.removeprefix("bt_seconds_") + "_s": v
        for k, v in sorted(metrics.items())
        if k.startswith("bt_seconds_")
    }
    table = pd.DataFrame(
        [
            {
                "symbols": symbols,
                "days": int(metrics["bt_days"]),
                "process_wall_s": wall,
                "step_s": metrics["bt_seconds"],
                **stages,
                "peak_rss_gb": rss,
                "goal_s": 60.0,
            }
        ]
    )
    text = markdown.table(table.round(2))
    print(text)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("nextday-bench")
    with mlflow.start_run(run_name="bench-backtest"):
        mlflow.log_metrics({f"backtest_{k}": float(v) for k, v in table.iloc[0].items()})
        mlflow.log_text(text, "bench_backtest.md")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])

"""Time `prepare` at the seed's scale: the synthetic market on SQLite and PostgreSQL, and
real-shaped CSV bars with a real feed's defects on SQLite.

Each case gets a fresh root and runs prepare in a child process, so wall time and peak memory
(max RSS) are the child's alone. Prints the stage table and logs it to MLflow (experiment
nextday-bench).
    python scripts/bench_prepare.py                       # 1000 symbols x 5 years, 3 cases
    python scripts/bench_prepare.py data.n_symbols=200    # any extra Hydra overrides

The real-shaped case writes the same market as a long CSV file (what a user brings), after
planting defects at the rates seen in real daily feeds: opens of 0, OHLC violations,
duplicated and missing days, stale closes, bad ticks, unadjusted splits, members that join
or leave mid-period, and close-only symbols; prepare then reads it with `data=csv`.
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
from nextday.config import compose


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


def real_shaped_csv(path: Path, n_symbols: int, years: int, seed: int = 11) -> int:
    """The synthetic market's bars as a user's CSV, with real-feed defects planted."""
    import numpy as np

    from nextday.data.synthetic import MarketSpec, generate_market

    bars = generate_market(MarketSpec(n_symbols=n_symbols, years=years, seed=seed)).ohlcv
    bars = bars.sort_values(["symbol", "ts"]).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    n = len(bars)

    def some(share: float) -> np.ndarray:
        return rng.choice(n, max(1, int(share * n)), replace=False)

    prices = ["open", "high", "low", "close"]
    bars.loc[some(0.001), "open"] = 0.0  # Yahoo's rows with open = 0
    rows = some(0.0005)  # opens a cent outside the day's range
    bars.loc[rows, "open"] = bars.loc[rows, "high"] * 1.001
    ticks = some(0.0002)  # one bad close, the next bar normal
    bars.loc[ticks, ["close", "high"]] = bars.loc[ticks, ["close", "high"]] * 1.9
    symbols = bars["symbol"].unique()
    for symbol in rng.choice(symbols, max(1, len(symbols) // 100), replace=False):
        mine = np.flatnonzero(bars["symbol"].to_numpy() == symbol)
        after = mine[rng.integers(100, len(mine) - 100) :]  # an unadjusted 2:1 split
        bars.loc[after, prices] = bars.loc[after, prices] / 2.0
    for symbol in rng.choice(symbols, max(1, len(symbols) // 200), replace=False):
        mine = np.flatnonzero(bars["symbol"].to_numpy() == symbol)
        start = rng.integers(100, len(mine) - 20)
        bars.loc[mine[start : start + 8], prices] = bars.loc[mine[start], "close"]  # stale
    for symbol in rng.choice(symbols, max(1, len(symbols) // 50), replace=False):
        mine = bars["symbol"].to_numpy() == symbol
        flat = mine.copy()
        bars.loc[flat, ["open", "high", "low"]] = np.repeat(
            bars.loc[flat, ["close"]].to_numpy(), 3, axis=1
        )  # close-only symbols
    keep = np.ones(n, dtype=bool)
    keep[some(0.002)] = False  # missing days
    for symbol in rng.choice(symbols, max(1, len(symbols) // 20), replace=False):
        mine = np.flatnonzero(bars["symbol"].to_numpy() == symbol)
        cut = rng.integers(len(mine) // 4, 3 * len(mine) // 4)
        keep[mine[:cut] if rng.random() < 0.5 else mine[cut:]] = False  # joins or leaves
    bars = pd.concat([bars[keep], bars.iloc[some(0.0005)]], ignore_index=True)  # duplicates
    frame = bars.rename(columns={"ts": "date"})
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    frame[["symbol", "date", *prices, "volume"]].to_csv(path, index=False, float_format="%.6g")
    return len(frame)


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
        csv = folder / "prices.csv"
        shape = compose(overrides).data
        written = real_shaped_csv(csv, int(shape.n_symbols), int(shape.years))
        print(f"real-shaped CSV: {written:,} rows")
        csv_overrides = [*overrides, "data=csv", f"data.path={csv}"]
        rows.append(
            {"store": "sqlite, real-shaped CSV", **_child_run(csv_overrides, folder / "csv", env)}
        )
    table = pd.DataFrame(rows).set_index("store")
    table["validate_share"] = table["validate"] / table["wall_s"]
    print(table.round(2).T.to_string())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("nextday-bench")
    with mlflow.start_run(run_name="bench-prepare"):
        mlflow.set_tag("nextday.step", "bench")
        mlflow.log_param("overrides", " ".join(overrides))
        mlflow.log_param("cpus", os.cpu_count())
        for store, row in table.iterrows():
            slug = store.replace(", ", "_").replace(" ", "_").replace("-", "_")
            mlflow.log_metrics({f"{slug}_{k}": float(v) for k, v in row.items()})
        mlflow.log_text(table.round(3).to_csv(), "bench_prepare.csv")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])

"""The tree baseline's fit: scikit-learn's own weighted binning beside the baseline's
(models/baselines.py, WeightedBins), on the same rows and weights, one after the other in this
process, with the tree settings of the default config and of the quick preset.

The rows are heavy-tailed features (Student t, 3 degrees of freedom) with one row in 20
weighted 10 (as the earnings model weights earnings days); the predictions of both trees on
5,000 unseen rows are compared. Prints a table and logs it to MLflow (experiment nextday-bench).
    python scripts/bench_baselines.py
    python scripts/bench_baselines.py --rows 9000 100000 200000
"""

from __future__ import annotations

import argparse
import os
import time

import mlflow
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

from nextday.config import compose
from nextday.models.baselines import WeightedBins

FEATURES = 20


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(n, FEATURES))
    weight = np.where(rng.random(n) < 0.05, 10.0, 1.0)
    y = 0.01 * rng.normal(size=n) + 0.002 * x[:, 0]
    return x, y, weight


def _case(rows: int, preset: str, tree: dict) -> dict:
    x, y, weight = _rows(rows, seed=0)
    unseen, _, _ = _rows(5000, seed=1)
    settings = dict(random_state=0, early_stopping=False, **tree)
    start = time.perf_counter()
    native = HistGradientBoostingRegressor(**settings).fit(x, y, sample_weight=weight)
    native_s = time.perf_counter() - start
    start = time.perf_counter()
    bins = WeightedBins.fit(x, weight)
    binned = HistGradientBoostingRegressor(**settings).fit(
        bins.transform(x), y, sample_weight=weight
    )
    binned_s = time.perf_counter() - start
    difference = np.abs(native.predict(unseen) - binned.predict(bins.transform(unseen))).max()
    return {
        "rows": rows,
        "preset": preset,
        "max_iter": tree["max_iter"],
        "scikit_learn_s": native_s,
        "weighted_bins_s": binned_s,
        "ratio": binned_s / native_s,
        "max_abs_prediction_difference": float(difference),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[9_000, 100_000])
    args = parser.parse_args()
    presets = {
        "default": dict(compose([]).train.baselines.tree),
        "quick": dict(compose(["experiment=quick"]).train.baselines.tree),
    }
    table = pd.DataFrame(
        [_case(rows, name, tree) for rows in args.rows for name, tree in presets.items()]
    )
    print(f"{FEATURES} features, {os.cpu_count()} CPUs")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment("nextday-bench")
    with mlflow.start_run(run_name="bench-baselines"):
        mlflow.set_tag("nextday.step", "bench")
        mlflow.log_params({"rows": " ".join(map(str, args.rows)), "features": FEATURES})
        for row in table.itertuples():
            key = f"{row.preset}_{row.rows}"
            mlflow.log_metrics(
                {
                    f"{key}_scikit_learn_s": row.scikit_learn_s,
                    f"{key}_weighted_bins_s": row.weighted_bins_s,
                    f"{key}_ratio": row.ratio,
                    f"{key}_max_abs_prediction_difference": row.max_abs_prediction_difference,
                }
            )
        mlflow.log_text(table.to_csv(index=False), "bench_baselines.csv")


if __name__ == "__main__":
    main()

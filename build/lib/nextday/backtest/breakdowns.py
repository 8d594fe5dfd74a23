"""Where the model works and where it does not: regimes, volatility, earnings surprises."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.evaluation.metrics import daily_ic

REGIMES = ("bull", "bear", "sideways")


def market_regimes(market_return: pd.Series, window: int, threshold: float) -> pd.Series:
    """Each date's regime from the market's trailing `window`-day return scaled by its own
    volatility over the window (known at that date's close): bull above +threshold, bear
    below -threshold, sideways between; `warm-up` until the window is full."""
    log_return = np.log1p(market_return.sort_index())
    trailing = log_return.rolling(window).sum()
    spread = log_return.rolling(window).std() * np.sqrt(window)
    score = trailing / spread
    regime = np.where(score > threshold, "bull", np.where(score < -threshold, "bear", "sideways"))
    return pd.Series(np.where(score.isna(), "warm-up", regime), index=score.index, name="regime")


def volatility_buckets(vol: np.ndarray, buckets: int = 5) -> np.ndarray:
    labels = ["1 calm", *(str(i) for i in range(2, buckets)), f"{buckets} wild"]
    return np.asarray(pd.qcut(vol, buckets, labels=labels, duplicates="drop").astype(str))


def surprise_buckets(surprise: np.ndarray) -> np.ndarray:
    """Sign and size of the EPS surprise: miss/beat, small/large (split at the median size)."""
    surprise = np.asarray(surprise, float)
    size = np.abs(surprise)
    moved = size > 1e-12
    median = np.median(size[moved]) if moved.any() else 0.0
    label = np.where(size > median, "large", "small")
    out = np.where(surprise > 0, "beat " + label, "miss " + label)
    return np.where(moved, out, "in line")


def table(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per value of `key`: rows, MAE beside the zero predictor, skill, direction accuracy,
    IC (mean daily Spearman within the bucket) and coverage of the 80% interval."""
    out = []
    for value, part in rows.groupby(key, sort=True):
        error = np.abs(part["prediction"] - part["label"])
        zero = np.abs(part["label"])
        ic = daily_ic(
            part["prediction"].to_numpy(), part["label"].to_numpy(), part["date"].to_numpy()
        )
        moved = part["label"] != 0
        out.append(
            {
                key: value,
                "rows": len(part),
                "mae": error.mean(),
                "zero_mae": zero.mean(),
                "skill": 1.0 - error.mean() / zero.mean() if zero.mean() > 0 else np.nan,
                "dir_acc": float(
                    (np.sign(part["prediction"][moved]) == np.sign(part["label"][moved])).mean()
                ),
                "ic": float(ic.mean()) if len(ic) else np.nan,
                "coverage_80": float(
                    ((part["p10"] <= part["label"]) & (part["label"] <= part["p90"])).mean()
                ),
            }
        )
    return pd.DataFrame(out)

"""Point-forecast metrics, under their fixed names: mae, rmse, r2, dir_acc, ic, skill.

Cross-sectional statistics (the IC) use only dates with at least `min_symbols` symbols
(`evaluation.min_symbols`, set for the whole process by `configure` when a step starts, so
that train, calibrate, export, backtest and monitor judge the same way): a rank correlation
over three names is noise, not a measurement. With no such date the IC is undefined, and
`ic_undefined_reason` says why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pandas as pd

from nextday.contracts.metrics import POINT_QUANTITIES

POINT_METRICS = POINT_QUANTITIES
DEFAULT_MIN_SYMBOLS = 10
_cross_section = {"min_symbols": DEFAULT_MIN_SYMBOLS}


def configure(evaluation) -> None:
    """Take `evaluation.min_symbols` from the composed config (the `evaluation` group)."""
    set_min_symbols(int(evaluation.min_symbols))


def set_min_symbols(n: int) -> None:
    if n < 2:
        raise ValueError(f"evaluation.min_symbols must be at least 2, got {n}")
    _cross_section["min_symbols"] = int(n)


def min_symbols() -> int:
    return _cross_section["min_symbols"]


@contextlib.contextmanager
def cross_section_min(n: int) -> Iterator[None]:
    """Judge with `n` as the minimum cross-section inside the block (tests, scripts)."""
    before = min_symbols()
    set_min_symbols(n)
    try:
        yield
    finally:
        set_min_symbols(before)


def ic_undefined_reason(dates) -> str | None:
    """Why the IC of rows on `dates` is undefined, or None when some date is wide enough."""
    sizes = pd.Series(np.asarray(dates)).value_counts()
    if len(sizes) and sizes.max() >= min_symbols():
        return None
    widest = int(sizes.max()) if len(sizes) else 0
    return (
        f"undefined: no date has at least {min_symbols()} symbols (evaluation.min_symbols; "
        f"the widest has {widest})"
    )


def daily_ic(prediction: np.ndarray, actual: np.ndarray, dates: np.ndarray) -> pd.Series:
    """Cross-sectional Spearman correlation per date (dates with fewer than `min_symbols()`
    names or a constant prediction are left out: a rank correlation is undefined there)."""
    frame = pd.DataFrame({"date": dates, "p": prediction, "y": actual})
    counts = frame.groupby("date")["y"].transform("size")
    frame = frame[counts >= min_symbols()]
    if frame.empty:
        return pd.Series(dtype=float)
    ranks = frame.groupby("date")[["p", "y"]].rank()
    ranks["date"] = frame["date"].to_numpy()
    grouped = ranks.groupby("date")
    centred = ranks[["p", "y"]] - grouped[["p", "y"]].transform("mean")
    covariance = (centred["p"] * centred["y"]).groupby(ranks["date"]).sum()
    spread = (centred**2).groupby(ranks["date"]).sum()
    denominator = np.sqrt(spread["p"] * spread["y"])
    return (covariance / denominator.where(denominator > 0)).dropna()


def direction_hits(prediction, actual) -> np.ndarray:
    """Per row: 1.0 where the prediction has the actual's sign, 0.0 where not, NaN where the
    actual is zero (no direction to get right)."""
    prediction, actual = np.asarray(prediction, dtype=float), np.asarray(actual, dtype=float)
    hits = (np.sign(prediction) == np.sign(actual)).astype(float)
    return np.where(actual != 0, hits, np.nan)


def direction_accuracy(prediction, actual) -> float:
    """dir_acc: the share of rows with a non-zero actual whose sign the prediction gets right
    (NaN when no row moved)."""
    hits = direction_hits(prediction, actual)
    return float(np.nanmean(hits)) if np.isfinite(hits).any() else float("nan")


def point_metrics(prediction, actual, dates) -> dict[str, float]:
    """mae, rmse, r2, dir_acc, ic and skill of `prediction` against `actual`.

    r2 is against the segment's own mean; dir_acc counts rows with a non-zero actual; ic is the
    mean of the daily cross-sectional Spearman correlations (NaN when undefined, e.g. for a
    constant predictor); skill is 1 - mae / mae of the zero predictor on the same rows.
    """
    prediction = np.asarray(prediction, dtype=float)
    actual = np.asarray(actual, dtype=float)
    if prediction.shape != actual.shape:
        raise ValueError(f"{prediction.shape[0]} predictions for {actual.shape[0]} actuals")
    if actual.size == 0:
        raise ValueError("no rows to evaluate")
    error = prediction - actual
    mae = float(np.mean(np.abs(error)))
    total = float(np.sum((actual - actual.mean()) ** 2))
    ic = daily_ic(prediction, actual, np.asarray(dates))
    zero_mae = float(np.mean(np.abs(actual)))
    return {
        "mae": mae,
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan"),
        "dir_acc": direction_accuracy(prediction, actual),
        "ic": float(ic.mean()) if len(ic) else float("nan"),
        "skill": 1.0 - mae / zero_mae if zero_mae > 0 else float("nan"),
    }


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """`{prefix}_{name}` for every finite metric (MLflow gets no NaN)."""
    return {f"{prefix}_{k}": float(v) for k, v in metrics.items() if np.isfinite(v)}

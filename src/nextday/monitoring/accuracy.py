"""How the served version does on the predictions whose actual is known: each day's MAE,
coverage, IC and latency, their rolling means, and the summary the alerts judge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.contracts.outputs import INTERVALS
from nextday.evaluation.intervals import coverage
from nextday.evaluation.metrics import daily_ic

# the interval the monitor judges: the served p10-p90, whose level the reference's
# val_coverage_80 and `monitor.coverage_band` are about
LEVEL = 0.8
LOWER, UPPER = INTERVALS[LEVEL]


def daily_series(predictions: pd.DataFrame, window_days: int, coverage_days: int) -> pd.DataFrame:
    """One row per prediction date: rows, mae, coverage (of the LEVEL interval), latency_ms_p50,
    ic, and the rolling means over the last `window_days` (`coverage_days` for the coverage)
    dates with actuals."""
    frame = predictions.assign(
        ts=pd.to_datetime(predictions["ts"]), abs_error=predictions["error"].abs()
    )
    grouped = frame.groupby("ts")
    sizes = grouped.size()
    known = frame.dropna(subset=["actual"])
    covered = {
        ts: coverage(day[LOWER], day[UPPER], day["actual"]) for ts, day in known.groupby("ts")
    }
    daily = pd.DataFrame(
        {
            "rows": sizes,
            "mae": grouped["abs_error"].mean(),
            "coverage": pd.Series(covered, dtype=float).reindex(sizes.index),
            "latency_ms_p50": grouped["latency_ms"].median(),
        }
    )
    # the same cross-sectional rule as every step: dates with too few symbols have no IC
    daily["ic"] = daily_ic(
        known["predicted"].to_numpy(float), known["actual"].to_numpy(float), known["ts"].to_numpy()
    )
    judged = daily.dropna(subset=["mae"])
    daily["rolling_mae"] = judged["mae"].rolling(window_days, min_periods=1).mean()
    daily["rolling_ic"] = judged["ic"].rolling(window_days, min_periods=1).mean()
    daily["rolling_coverage"] = judged["coverage"].rolling(coverage_days, min_periods=1).mean()
    return daily


@dataclass(frozen=True)
class Summary:
    """The monitor's headline numbers (logged as monitor_<field> where finite)."""

    rows: int
    rows_with_actual: int
    actuals_filled: int  # actuals this run found
    val_mae: float  # the reference's, from export
    rolling_mae: float
    rolling_coverage: float
    rolling_ic: float
    latency_ms_p50: float


def summarize(
    predictions: pd.DataFrame, daily: pd.DataFrame, val_mae: float, actuals_before: int
) -> Summary:
    """The latest rolling values of `daily` (NaN before any actual), with the row counts of
    `predictions` (which had `actuals_before` actuals before this run filled them)."""
    judged = daily.dropna(subset=["mae"])

    def latest(column: str) -> float:
        return float(judged[column].iloc[-1]) if len(judged) else np.nan

    with_actual = int(predictions["actual"].notna().sum())
    return Summary(
        rows=len(predictions),
        rows_with_actual=with_actual,
        actuals_filled=with_actual - actuals_before,
        val_mae=float(val_mae),
        rolling_mae=latest("rolling_mae"),
        rolling_coverage=latest("rolling_coverage"),
        rolling_ic=latest("rolling_ic"),
        latency_ms_p50=float(predictions["latency_ms"].median()),
    )

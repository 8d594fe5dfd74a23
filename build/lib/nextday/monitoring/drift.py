"""Drift of a live distribution against the training reference saved at export.

- PSI (population stability index): sum over the reference's decile bins of
  (live - ref) * ln(live / ref), shares floored at 1e-4 so an empty bin stays finite.
  Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a real shift.
- KS: the two-sample Kolmogorov-Smirnov statistic and p-value against the reference sample.

A fixed PSI limit is not enough for daily market features: over a few weeks, slow features
(60-day return, distance from the high, the market's own return) sit in a narrow part of
their range, so any short window looks "shifted" against a multi-year reference, even inside
the training period. `window_psi` measures that natural spread: the PSI of every window of
the training data itself, which the monitor turns into each feature's own limit.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

BINS = 10
FLOOR = 1e-4
SAMPLE = 2000


def reference(values: np.ndarray, seed: int = 0) -> dict:
    """Decile edges, the share of reference values in each bin, and a sample for KS."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
    shares = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= SAMPLE else rng.choice(values, SAMPLE, replace=False)
    return {
        "edges": edges.tolist(),
        "shares": (shares / len(values)).tolist(),
        "sample": np.sort(sample).tolist(),
    }


def window_psi(ref: dict, values: np.ndarray, dates: np.ndarray, days: int, step: int = 5) -> list:
    """PSI against `ref` of every `days`-date window (every `step` dates) of `values`, whose
    rows fall on `dates`: how far windows of the reference period itself stray from it."""
    values, dates = np.asarray(values, float), np.asarray(dates)
    unique = np.unique(dates)
    position = np.searchsorted(unique, dates)
    return [
        round(psi(ref, values[(position >= first) & (position < first + days)]), 5)
        for first in range(0, len(unique) - days + 1, step)
    ]


def psi(ref: dict, values: np.ndarray) -> float:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan")
    counts = np.bincount(
        np.searchsorted(np.asarray(ref["edges"]), values, side="right"),
        minlength=len(ref["shares"]),
    )
    live = np.maximum(counts / len(values), FLOOR)
    expected = np.maximum(np.asarray(ref["shares"]), FLOOR)
    return float(np.sum((live - expected) * np.log(live / expected)))


def ks(ref: dict, values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(np.asarray(ref["sample"]), values)
    return float(result.statistic), float(result.pvalue)

"""Drift of a live distribution against the training reference saved at export.

- PSI (population stability index): sum over the reference's decile bins of
  (live - ref) * ln(live / ref), shares floored at 1e-4 so an empty bin stays finite.
  Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a real shift.
- KS: the two-sample Kolmogorov-Smirnov statistic and p-value against the reference sample.

A fixed PSI limit is not enough for daily market features: over a few weeks, slow features
(60-day return, distance from the high, the market's own return) sit in a narrow part of
their range, so any short window looks "shifted" against a multi-year reference, even inside
the training period. `window_psi` measures that natural spread: the PSI of every window of
the training data itself, which `psi_limit` turns into each feature's own limit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from nextday.contracts.reference import Distribution, DriftReference
from nextday.data.store import Store
from nextday.monitoring.settings import MonitorSettings

BINS = 10
FLOOR = 1e-4
SAMPLE = 2000
PREDICTION = "prediction"  # the drift table's row of the served prediction


def reference(values: np.ndarray, seed: int = 0) -> Distribution:
    """Decile edges, the share of reference values in each bin, and a sample for KS (no
    windows: `window_psi` measures them)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
    shares = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= SAMPLE else rng.choice(values, SAMPLE, replace=False)
    return Distribution(
        edges=edges.tolist(),
        shares=(shares / len(values)).tolist(),
        sample=np.sort(sample).tolist(),
    )


def window_psi(
    ref: Distribution, values: np.ndarray, dates: np.ndarray, days: int, step: int = 5
) -> list[float]:
    """PSI against `ref` of every `days`-date window (every `step` dates) of `values`, whose
    rows fall on `dates`: how far windows of the reference period itself stray from it."""
    values, dates = np.asarray(values, float), np.asarray(dates)
    unique = np.unique(dates)
    position = np.searchsorted(unique, dates)
    return [
        round(psi(ref, values[(position >= first) & (position < first + days)]), 5)
        for first in range(0, len(unique) - days + 1, step)
    ]


def psi(ref: Distribution, values: np.ndarray) -> float:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan")
    counts = np.bincount(
        np.searchsorted(np.asarray(ref.edges), values, side="right"),
        minlength=len(ref.shares),
    )
    live = np.maximum(counts / len(values), FLOOR)
    expected = np.maximum(np.asarray(ref.shares), FLOOR)
    return float(np.sum((live - expected) * np.log(live / expected)))


def ks(ref: Distribution, values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    result = stats.ks_2samp(np.asarray(ref.sample), values)
    return float(result.statistic), float(result.pvalue)


def psi_limit(ref: Distribution, settings: MonitorSettings) -> float:
    """A feature's drift limit: `window_margin` times the largest PSI any window of its
    training period showed against the whole period (its natural spread), and at least
    `psi_limit`. A reference without windows (older exports) gets `psi_limit`."""
    windows = ref.window_psi or [0.0]
    return max(settings.psi_limit, settings.window_margin * max(windows))


def drift_table(
    store: Store, predictions: pd.DataFrame, reference: DriftReference, settings: MonitorSettings
) -> pd.DataFrame:
    """PSI and KS of every feature (from the store's feature_history) and of the prediction,
    on the last `drift_days` dates with predictions: one row each (feature, psi, psi_limit,
    ks_stat, ks_p, rows)."""
    dates = np.sort(pd.to_datetime(predictions["ts"]).unique())[-settings.drift_days :]
    recent = predictions[pd.to_datetime(predictions["ts"]).isin(dates)]
    features = store.read(
        "feature_history", "ts >= :first", {"first": pd.Timestamp(dates[0]).date()}
    )
    features["ts"] = pd.to_datetime(features["ts"])
    live = (
        recent[["symbol", "ts"]]
        .assign(ts=pd.to_datetime(recent["ts"]))
        .merge(features, on=["symbol", "ts"], how="inner")
    )
    compared = {
        name: (ref, live[name].to_numpy(float))
        for name, ref in reference.features.items()
        if name in live
    }
    compared[PREDICTION] = (reference.prediction, recent["predicted"].to_numpy(float))
    rows = []
    for name, (ref, values) in compared.items():
        statistic, p_value = ks(ref, values)
        rows.append(
            {
                "feature": name,
                "psi": psi(ref, values),
                "psi_limit": psi_limit(ref, settings),
                "ks_stat": statistic,
                "ks_p": p_value,
                "rows": int(np.isfinite(values).sum()),
            }
        )
    return pd.DataFrame(rows)


def drifted(table: pd.DataFrame, settings: MonitorSettings) -> pd.DataFrame:
    """The rows of `table` that drifted: enough live rows (`min_rows`), PSI above the
    feature's limit and a KS p-value below `ks_pvalue`."""
    enough = table["rows"] >= settings.min_rows
    return table[
        enough & (table["psi"] > table["psi_limit"]) & (table["ks_p"] < settings.ks_pvalue)
    ]

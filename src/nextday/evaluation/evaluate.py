"""Evaluate any set of forecasts on the same rows, each under its fixed metric names
(`contracts.metrics.point`): the model's `{segment}_{metric}`, a baseline's
`baseline_{name}_{segment}_{metric}` and the oracle's `oracle_{segment}_{metric}`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.contracts import metrics as metric_names
from nextday.contracts.metrics import MODEL, ORACLE
from nextday.evaluation.diebold_mariano import diebold_mariano
from nextday.evaluation.metrics import point_metrics

__all__ = ["MODEL", "ORACLE", "comparison_table", "evaluate", "significance"]


def evaluate(forecasts: dict[str, np.ndarray], actual, dates, segment: str) -> dict[str, float]:
    """Point metrics of every forecast on one segment's rows, flat and prefixed."""
    out: dict[str, float] = {}
    for name, prediction in forecasts.items():
        values = point_metrics(prediction, actual, dates)
        out |= {
            metric_names.point(segment, k, name): float(v)
            for k, v in values.items()
            if np.isfinite(v)
        }
    return out


def comparison_table(forecasts: dict[str, np.ndarray], actual, dates) -> pd.DataFrame:
    """One row per forecast, one column per metric: for reports."""
    return pd.DataFrame({name: point_metrics(p, actual, dates) for name, p in forecasts.items()}).T


def significance(
    forecasts: dict[str, np.ndarray], actual, dates, against: dict[str, str]
) -> dict[str, float]:
    """Diebold-Mariano of the model against each named forecast, squared and absolute loss.

    `against` maps a label (used in metric names) to a forecast name, e.g. {"zero": "zero",
    "best": "tree"}. Logged as dm_{label}_{loss}_stat / _p (one-sided: the model is better).
    """
    actual = np.asarray(actual, float)
    model_error = forecasts[MODEL] - actual
    out = {}
    for label, name in against.items():
        for loss in ("mse", "mae"):
            result = diebold_mariano(model_error, forecasts[name] - actual, dates, loss=loss)
            out[f"dm_{label}_{loss}_stat"] = result.statistic
            out[f"dm_{label}_{loss}_p"] = result.p_better
    return {k: v for k, v in out.items() if np.isfinite(v)}

"""Diebold-Mariano test of equal predictive accuracy, for a panel of daily forecasts.

Loss differences are averaged across symbols per date first (the cross-section on one date
shares a market shock, so its rows are not independent), then the mean daily difference is
tested with a HAC variance (h-1 lags) and the Harvey-Leybourne-Newbold small-sample
correction, against a Student-t with T-1 degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

LOSSES = {"mse": np.square, "mae": np.abs}


@dataclass(frozen=True)
class DMResult:
    statistic: float  # negative: the first forecast has the lower loss
    p_value: float  # two-sided
    p_better: float  # one-sided: the first forecast's loss is lower
    n_dates: int
    mean_difference: float


def diebold_mariano(error_a, error_b, dates, loss: str = "mse", horizon: int = 1) -> DMResult:
    """Test whether forecast a (errors `error_a`) beats forecast b on the same rows."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    f = LOSSES[loss]
    difference = f(np.asarray(error_a, float)) - f(np.asarray(error_b, float))
    daily = pd.Series(difference).groupby(np.asarray(dates)).mean().sort_index().to_numpy()
    n = daily.size
    if n < 3:
        return DMResult(float("nan"), float("nan"), float("nan"), n, float("nan"))
    mean = daily.mean()
    centred = daily - mean
    variance = centred @ centred / n
    for lag in range(1, horizon):
        variance += 2.0 * (centred[lag:] @ centred[:-lag]) / n
    if variance <= 0:
        return DMResult(float("nan"), float("nan"), float("nan"), n, float(mean))
    statistic = mean / np.sqrt(variance / n)
    correction = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    statistic *= correction
    t = stats.t(df=n - 1)
    return DMResult(
        statistic=float(statistic),
        p_value=float(2 * t.sf(abs(statistic))),
        p_better=float(t.cdf(statistic)),
        n_dates=n,
        mean_difference=float(mean),
    )

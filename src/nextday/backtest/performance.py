"""The performance summary of a book's daily simple returns, as pyfolio and empyrical report it.

Definitions follow empyrical-reloaded (the tests check agreement): the annual return is
compounded (growth ** (252 / days) - 1), volatility and Sharpe use the sample standard deviation
(ddof=1) with a risk-free rate of 0, the Sortino ratio is the annualized mean over the
annualized downside deviation below 0 (root mean square of min(r, 0) over all days), drawdowns
run from the running peak of equity starting at the capital of 1 (a loss on the first day is a
drawdown), and the Calmar ratio is the annual return over the absolute maximum drawdown.
Where a statistic is undefined (one day, no dispersion, no downside, no drawdown) it is NaN,
never an infinity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRADING_DAYS = 252


def equity(returns: pd.Series) -> pd.Series:
    """The growth of 1 invested on the first day: the cumulative product of 1 + r."""
    return (1.0 + returns).cumprod()


def drawdown(returns: pd.Series) -> pd.Series:
    """Equity over its running peak, less 1; the peak starts at the starting capital of 1, so
    returns of -10% and -5% are drawdowns of -10% and -14.5% (a NaN day stays NaN)."""
    growth = equity(returns)
    return growth / np.maximum(growth.cummax(), 1.0) - 1.0


def sharpe_ratio(returns: np.ndarray, axis: int = -1) -> np.ndarray:
    """Annualized Sharpe ratio (mean over sample standard deviation, times sqrt 252) along
    `axis` (a 0-d array for one series); NaN with fewer than two values or all of them
    equal."""
    values = np.asarray(returns, dtype=np.float64)
    count = values.shape[axis]
    if count < 2:
        return np.full(np.delete(values.shape, axis), np.nan)
    std = values.std(axis=axis, ddof=1)
    flat = np.ptp(values, axis=axis) == 0  # the mean of equal values leaves a 1e-18 residue
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = values.mean(axis=axis) / std * np.sqrt(TRADING_DAYS)
    return np.where(flat, np.nan, ratio)


def summary(returns: pd.Series, turnover: pd.Series | None = None) -> dict[str, float]:
    """Annual return, volatility, Sharpe, Sortino, maximum drawdown (negative), Calmar, mean
    daily turnover (NaN without `turnover`), hit rate and days of a daily return series; days
    with a NaN return are left out, and an empty series gives {}."""
    returns = returns.dropna()
    n = len(returns)
    if n == 0:
        return {}
    values = returns.to_numpy(dtype=np.float64)
    growth = float(np.prod(1.0 + values))
    # a book that lost everything (growth <= 0) has no real compounded rate: -100% a year
    ann_return = growth ** (TRADING_DAYS / n) - 1.0 if growth > 0 else -1.0
    if n < 2:
        volatility = float("nan")
    else:  # equal values have no dispersion, whatever residue their mean leaves
        volatility = 0.0 if np.ptp(values) == 0 else float(values.std(ddof=1))
    downside = float(np.sqrt(np.mean(np.minimum(values, 0.0) ** 2)))
    max_drawdown = float(drawdown(returns).min())
    return {
        "ann_return": float(ann_return),
        "ann_vol": float(volatility * np.sqrt(TRADING_DAYS)),
        "sharpe": float(sharpe_ratio(values)),
        "sortino": float(values.mean() / downside * np.sqrt(TRADING_DAYS))
        if n > 1 and downside > 0
        else float("nan"),
        "max_drawdown": max_drawdown,
        "calmar": ann_return / abs(max_drawdown) if max_drawdown < 0 else float("nan"),
        "turnover": float(turnover.mean()) if turnover is not None else float("nan"),
        "hit_rate": float((values > 0).mean()),
        "days": float(n),
    }

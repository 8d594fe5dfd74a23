"""How sure a backtest's Sharpe ratio is: bootstrap intervals, PSR and the deflated Sharpe.

- `sharpe_interval` and `sharpe_difference`: percentile intervals from the stationary block
  bootstrap of Politis & Romano (1994) over days: blocks of consecutive days with a geometric
  length of mean `block_days` keep the serial dependence of daily returns (volatility
  clustering, positions held over several days) that an iid bootstrap would destroy. A
  difference resamples the same days for both books (paired), so what the books share cancels.
- `probabilistic_sharpe`: the PSR of Bailey & Lopez de Prado (2012), the probability that the
  true Sharpe exceeds a benchmark given the track record's length, skewness and kurtosis:
  Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)), with SR the daily
  (non-annualized) Sharpe (sample standard deviation, ddof=1), g3 the skewness and g4 the
  (non-excess) kurtosis, both the moment estimators (scipy's defaults).
- `deflated_sharpe`: the DSR of Bailey & Lopez de Prado (2014), the PSR against the Sharpe
  ratio the best of N independent trials reaches when none has skill:
  SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), gamma the
  Euler-Mascheroni constant and V the variance of the trials' Sharpe ratios.

Sharpe ratios in `SharpeInterval` are annualized (sqrt 252, as `performance`); PSR and DSR
take daily ones, as the papers do. Every function drops NaN days and answers NaN on fewer than
`MIN_DAYS` days, where a Sharpe ratio is noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import kurtosis, norm, skew

from nextday.backtest.performance import sharpe_ratio

MIN_DAYS = 20


@dataclass(frozen=True)
class SharpeInterval:
    """An annualized Sharpe ratio (or difference of two) and its central `level` interval."""

    sharpe: float
    low: float
    high: float
    level: float


def _finite(returns: ArrayLike) -> np.ndarray:
    values = np.asarray(returns, dtype=np.float64)
    return values[np.isfinite(values)]


def _paired(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Days x 2 array of two books' returns on the days both have one (Series align on their
    index, arrays by position)."""
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        both = pd.concat([a, b], axis=1, join="inner").to_numpy(dtype=np.float64)
    else:
        left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if left.shape != right.shape or left.ndim != 1:
            raise ValueError(
                f"sharpe_difference needs two books on the same days: got shapes "
                f"{left.shape} and {right.shape}"
            )
        both = np.column_stack([left, right])
    return both[np.isfinite(both).all(axis=1)]


def stationary_indices(
    days: int, block_days: float, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """`draws` x `days` day indices of the stationary bootstrap: each day starts a new block at
    a uniform random day with probability 1 / block_days, otherwise it continues the block with
    the next day (wrapping from the last day to the first)."""
    if block_days < 1:
        raise ValueError(f"block_days must be at least 1, got {block_days}")
    starts = rng.integers(0, days, size=(draws, days), dtype=np.int32)
    new_block = rng.random((draws, days)) < 1.0 / block_days
    new_block[:, 0] = True
    position = np.arange(days, dtype=np.int32)
    # for each day, the day its block began: the last new-block day up to it
    began = np.maximum.accumulate(np.where(new_block, position, 0), axis=1)
    index = np.take_along_axis(starts, began, axis=1) + (position - began)
    index[index >= days] -= days  # start + offset < 2 days: wrap once
    return index


def _interval(point: float, draws: np.ndarray, level: float) -> SharpeInterval:
    found = draws[np.isfinite(draws)]
    if not np.isfinite(point) or found.size == 0:
        return SharpeInterval(float("nan"), float("nan"), float("nan"), level)
    low, high = np.quantile(found, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return SharpeInterval(float(point), float(low), float(high), level)


def _check(level: float, draws: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")


def sharpe_interval(
    returns: ArrayLike,
    level: float = 0.95,
    block_days: float = 10,
    draws: int = 2000,
    seed: int = 0,
) -> SharpeInterval:
    """Percentile `level` interval of the annualized Sharpe ratio from a stationary block
    bootstrap over days (Politis & Romano 1994; mean block length `block_days` keeps the serial
    dependence of daily returns); the same `seed` gives the same interval."""
    _check(level, draws)
    values = _finite(returns)
    if values.size < MIN_DAYS:
        return SharpeInterval(float("nan"), float("nan"), float("nan"), level)
    rng = np.random.default_rng(seed)
    resampled = values[stationary_indices(values.size, block_days, draws, rng)]
    return _interval(float(sharpe_ratio(values)), sharpe_ratio(resampled, axis=1), level)


def sharpe_difference(
    a: ArrayLike,
    b: ArrayLike,
    level: float = 0.95,
    block_days: float = 10,
    draws: int = 2000,
    seed: int = 0,
) -> SharpeInterval:
    """Sharpe(a) - Sharpe(b), annualized, for two books on the same days, with a percentile
    interval that resamples the same days for both (paired stationary bootstrap). With `a`
    sized by the interval and `b` equal-weight: `low > 0` says sizing by the interval helped,
    `high < 0` that it hurt, otherwise the data cannot tell."""
    _check(level, draws)
    both = _paired(a, b)
    if len(both) < MIN_DAYS:
        return SharpeInterval(float("nan"), float("nan"), float("nan"), level)
    rng = np.random.default_rng(seed)
    resampled = both[stationary_indices(len(both), block_days, draws, rng)]  # draws x days x 2
    point = sharpe_ratio(both[:, 0]) - sharpe_ratio(both[:, 1])
    spread = sharpe_ratio(resampled[..., 0], axis=1) - sharpe_ratio(resampled[..., 1], axis=1)
    return _interval(float(point), spread, level)


def psr_from_moments(
    sharpe: float, days: int, skewness: float, kurt: float, benchmark: float = 0.0
) -> float:
    """The PSR of a daily Sharpe ratio measured over `days` days of returns with `skewness`
    and (non-excess) kurtosis `kurt`, against the daily Sharpe ratio `benchmark`."""
    variance = 1.0 - skewness * sharpe + (kurt - 1.0) / 4.0 * sharpe**2
    if days < 2 or not variance > 0:
        return float("nan")
    return float(norm.cdf((sharpe - benchmark) * np.sqrt(days - 1) / np.sqrt(variance)))


def probabilistic_sharpe(returns: ArrayLike, benchmark: float = 0.0) -> float:
    """PSR (Bailey & Lopez de Prado 2012): the probability that the true daily Sharpe ratio
    of `returns` exceeds `benchmark` (daily, not annualized), given the track record's length,
    skewness and kurtosis; NaN on fewer than MIN_DAYS days or returns without dispersion."""
    values = _finite(returns)
    if values.size < MIN_DAYS or np.ptp(values) == 0:
        return float("nan")
    sharpe = float(values.mean() / values.std(ddof=1))
    moments = float(skew(values)), float(kurtosis(values, fisher=False))
    return psr_from_moments(sharpe, values.size, *moments, benchmark=benchmark)


def expected_max_sharpe(trials: int, variance: float) -> float:
    """The expected maximum of `trials` independent Sharpe ratios of variance `variance` and
    true mean 0 (Bailey & Lopez de Prado 2014, from extreme value theory); 0 for one trial."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if trials == 1:
        return 0.0
    gamma = np.euler_gamma
    z = (1.0 - gamma) * norm.ppf(1.0 - 1.0 / trials) + gamma * norm.ppf(1.0 - 1.0 / (trials * np.e))
    return float(np.sqrt(variance) * z)


def deflated_sharpe(
    returns: ArrayLike, trials: int, trial_sharpe_variance: float | None = None
) -> float:
    """DSR (Bailey & Lopez de Prado 2014): the PSR of `returns` against the expected maximum
    daily Sharpe ratio of `trials` independent trials without skill.

    `trial_sharpe_variance` is the variance of the trials' daily Sharpe ratios. A tuning study
    records validation losses, not Sharpe ratios, so without it the variance is that of the
    Sharpe estimator over this track record under the null of no skill: 1 / (T - 1), the
    variance of the daily Sharpe of T days with a true Sharpe of 0 (Lo 2002; the skewness and
    kurtosis terms vanish at 0). The trials then differ only by estimation noise, and the DSR
    asks whether this Sharpe beats the best of `trials` such noisy draws. Trials of a study are
    not independent (neighbouring hyperparameters give similar models), so `trials` overstates
    the independent ones and the DSR errs on the strict side."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    values = _finite(returns)
    if values.size < MIN_DAYS:
        return float("nan")
    variance = 1.0 / (values.size - 1) if trial_sharpe_variance is None else trial_sharpe_variance
    return probabilistic_sharpe(values, benchmark=expected_max_sharpe(trials, variance))

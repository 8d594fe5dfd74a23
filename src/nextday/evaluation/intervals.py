"""Interval and distribution metrics: coverage_80, width_80, interval_score_80, CRPS, pinball."""

from __future__ import annotations

import numpy as np

from nextday.contracts.metrics import level_tag


def inside(lower, upper, actual) -> np.ndarray:
    """Per row: whether the actual lies in [lower, upper]."""
    actual = np.asarray(actual)
    return (np.asarray(lower) <= actual) & (actual <= np.asarray(upper))


def coverage(lower, upper, actual) -> float:
    """Share of outcomes inside [lower, upper] (both ends included)."""
    return float(np.mean(inside(lower, upper, np.asarray(actual, float))))


def width(lower, upper) -> float:
    return float(np.mean(np.asarray(upper, float) - np.asarray(lower, float)))


def interval_score(lower, upper, actual, level: float) -> float:
    """Gneiting-Raftery interval score of a central `level` interval (lower is better):
    width plus 2/alpha times the distance by which the outcome falls outside."""
    lower, upper, actual = (np.asarray(a, float) for a in (lower, upper, actual))
    alpha = 1.0 - level
    below = (lower - actual) * (actual < lower)
    above = (actual - upper) * (actual > upper)
    return float(np.mean((upper - lower) + 2.0 / alpha * (below + above)))


def pinball(quantile, actual, tau: float) -> float:
    """Quantile (pinball) loss of the `tau` quantile forecast."""
    diff = np.asarray(actual, float) - np.asarray(quantile, float)
    return float(np.mean(np.maximum(tau * diff, (tau - 1.0) * diff)))


def crps_from_quantiles(quantiles: np.ndarray, levels: np.ndarray, actual) -> float:
    """CRPS of forecasts given as quantiles (rows x levels): twice the pinball loss averaged
    over the levels, the quantile form of the CRPS integral on an even grid."""
    diff = np.asarray(actual, float)[:, None] - quantiles
    loss = np.maximum(levels * diff, (levels - 1.0) * diff)
    return float(2.0 * loss.mean())


def interval_metrics(lower, upper, actual, level: float = 0.8) -> dict[str, float]:
    tag = level_tag(level)
    return {
        f"coverage_{tag}": coverage(lower, upper, actual),
        f"width_{tag}": width(lower, upper),
        f"interval_score_{tag}": interval_score(lower, upper, actual, level),
    }

"""How good a calibration is, on rows it was not fitted on: what the calibrate step reports.

Coverage, width and interval score of the central interval (raw MC dropout and calibrated),
CRPS and pinball losses, reliability at every nominal level, coverage by volatility quintile
and by month, a constant-width interval for comparison, adaptive conformal on the test days,
and the "just raise dropout" experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nextday.evaluation import intervals
from nextday.evaluation.intervals import level_tag
from nextday.evaluation.metrics import prefixed
from nextday.models.data import Segment
from nextday.models.model import NextdayModel
from nextday.uncertainty.calibration import Calibration, Draws, adaptive_coverage

NOMINAL = np.round(np.arange(0.1, 1.0, 0.1), 2)
VOLATILITY = "vol_20d"  # the feature whose quintiles the conditional coverage is read by


@dataclass(frozen=True)
class AssessmentSettings:
    level: float
    adaptive_step: float | None  # None: no adaptive conformal
    dropout_rates: tuple[float, ...]
    seed: int  # of the dropout experiment's passes

    @classmethod
    def from_config(cls, settings: Mapping) -> AssessmentSettings:
        adaptive = settings["adaptive"]
        return cls(
            level=float(settings["level"]),
            adaptive_step=float(adaptive["step"]) if adaptive["enabled"] else None,
            dropout_rates=tuple(float(r) for r in settings["dropout_experiment"]),
            seed=int(settings["seed"]),
        )


@dataclass
class Assessment:
    metrics: dict[str, float]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class Judged:
    """One segment's draws with the calibrated interval."""

    draws: Draws
    dates: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray


def assess(
    model: NextdayModel,
    calibration: Calibration,
    segments: dict[str, Segment],
    draws: dict[str, Draws],
    settings: AssessmentSettings,
) -> Assessment:
    """Judge `calibration` on the val and test draws (every row of those segments)."""
    level, tag = settings.level, level_tag(settings.level)
    metrics: dict[str, float] = {
        "passes": calibration.passes,
        "calibration_rows": calibration.n_calibration,
    }
    tables: dict[str, pd.DataFrame] = {}
    judged: dict[str, Judged] = {}
    for name in ("val", "test"):
        part = draws[name]
        raw_low, raw_high = np.quantile(part.samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
        metrics.update(
            prefixed(intervals.interval_metrics(raw_low, raw_high, part.y, level), f"raw_{name}")
        )
        scale = calibration.scale(part.scale_x, part.sd)
        low, high = calibration.interval(part.mean, scale, level)
        judged[name] = Judged(part, segments[name].dates[part.rows], scale, low, high)
        metrics.update(prefixed(intervals.interval_metrics(low, high, part.y, level), name))
        metrics.update(_scores(calibration, part, scale, name))
        tables[f"reliability_{name}"] = reliability(calibration, part, scale)
    test, val = judged["test"], judged["val"]
    metrics.update(_constant_width(val, test, level, metrics[f"test_coverage_{tag}"]))
    vol = segments["test"].flat[test.draws.rows][:, model.spec.features.index(VOLATILITY)]
    tables["coverage_by_volatility"] = by_bucket(vol, test.low, test.high, test.draws.y)
    tables["coverage_by_month"] = by_month(test.dates, test.low, test.high, test.draws.y)
    if settings.adaptive_step is not None:
        low, high, _ = adaptive_coverage(
            test.draws.mean,
            test.scale,
            test.draws.y,
            test.dates,
            calibration,
            level,
            settings.adaptive_step,
        )
        metrics.update(
            prefixed(intervals.interval_metrics(low, high, test.draws.y, level), "aci_test")
        )
        adaptive = by_month(test.dates, low, high, test.draws.y)["coverage"]
        tables["coverage_by_month"]["aci_coverage"] = adaptive
    tables["dropout_experiment"] = dropout_experiment(
        model, segments["val"].x[val.draws.rows], val.draws.y, settings, calibration.passes
    )
    return Assessment({k: float(v) for k, v in metrics.items() if np.isfinite(v)}, tables)


def _scores(
    calibration: Calibration, part: Draws, scale: np.ndarray, name: str
) -> dict[str, float]:
    """CRPS, pinball losses and mean spreads of one segment."""
    quantiles = calibration.quantile_forecasts(part.mean, scale)
    out = {
        f"{name}_crps": intervals.crps_from_quantiles(
            quantiles, np.array(calibration.levels), part.y
        )
    }
    for tau in (0.1, 0.5, 0.9):
        forecast = part.mean + scale * calibration.quantile(tau)
        out[f"{name}_pinball_{round(tau * 100)}"] = intervals.pinball(forecast, part.y, tau)
    out[f"{name}_mc_sd_mean"] = float(part.sd.mean())
    out[f"{name}_sigma_mean"] = float((scale * calibration.sigma_factor).mean())
    return out


def _constant_width(val: Judged, test: Judged, level: float, test_coverage: float) -> dict:
    """A constant-width interval calibrated on validation, and the width that would give the
    same test coverage as ours (hindsight): ours should be narrower."""
    tag = level_tag(level)
    half = float(np.quantile(np.abs(val.draws.y - val.draws.mean), level, method="higher"))
    mean, y = test.draws.mean, test.draws.y
    out = prefixed(intervals.interval_metrics(mean - half, mean + half, y, level), "const_test")
    same = float(np.quantile(np.abs(y - mean), test_coverage))
    out[f"const_same_coverage_test_width_{tag}"] = 2 * same
    return out


def reliability(calibration: Calibration, part: Draws, scale: np.ndarray) -> pd.DataFrame:
    """Observed against nominal coverage of the central interval at levels 0.1 .. 0.9."""
    observed = [
        intervals.coverage(*calibration.interval(part.mean, scale, nominal), part.y)
        for nominal in NOMINAL
    ]
    return pd.DataFrame({"nominal": NOMINAL, "observed": observed})


def by_bucket(vol: np.ndarray, low: np.ndarray, high: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Coverage and width by quintile of trailing 20-day volatility."""
    bucket = pd.qcut(vol, 5, labels=["1 calm", "2", "3", "4", "5 wild"], duplicates="drop")
    frame = pd.DataFrame(
        {"bucket": bucket, "inside": intervals.inside(low, high, y), "width": high - low}
    )
    return frame.groupby("bucket", observed=True).agg(
        coverage=("inside", "mean"), width=("width", "mean"), rows=("inside", "size")
    )


def by_month(dates: np.ndarray, low: np.ndarray, high: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    months = pd.to_datetime(pd.Series(dates)).dt.to_period("M").astype(str)
    return (
        pd.DataFrame({"month": months, "inside": intervals.inside(low, high, y)})
        .groupby("month")
        .agg(coverage=("inside", "mean"), rows=("inside", "size"))
    )


def dropout_experiment(
    model: NextdayModel, x: np.ndarray, y: np.ndarray, settings: AssessmentSettings, passes: int
) -> pd.DataFrame:
    """Raw MC coverage and width at a few inference-time dropout rates (the seed's idea)."""
    from nextday.uncertainty.mc_dropout import with_dropout_rate

    level, rows = settings.level, []
    for rate in settings.dropout_rates:
        with with_dropout_rate(model.fitted_network(), rate):
            samples = model.sample(x, passes, settings.seed)
        low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
        rows.append(
            {
                "dropout": rate,
                **intervals.interval_metrics(low, high, y, level),
                "mae_of_mc_mean": float(np.mean(np.abs(samples.mean(axis=0) - y))),
            }
        )
    return pd.DataFrame(rows)

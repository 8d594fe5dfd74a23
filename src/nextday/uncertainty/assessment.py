"""How good a calibration is, on rows it was not fitted on: what the calibrate step reports.

Coverage, width and interval score of the central interval (raw MC dropout and calibrated),
CRPS and pinball losses, reliability at every nominal level, a constant-width interval for
comparison, the online rules (ACI and PID, `uncertainty.online`) replayed over the test days
from the static calibration, coverage, width and interval score of static, ACI and PID by
volatility quintile and by month, and the "just raise dropout" experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from nextday.contracts.metrics import level_tag
from nextday.evaluation import intervals
from nextday.evaluation.metrics import prefixed
from nextday.models.data import Segment
from nextday.models.model import NextdayModel
from nextday.uncertainty.calibration import Calibration, Draws
from nextday.uncertainty.online import (
    RULES,
    STATIC,
    VOLATILITY_FEATURE,
    OnlineSettings,
    OnlineState,
    ServedOnline,
    volatility_edges,
)
from nextday.uncertainty.replay import (
    REPLAY_COLUMNS,
    coverage_by,
    month,
    replay,
    volatility_quintile,
)

NOMINAL = np.round(np.arange(0.1, 1.0, 0.1), 2)


@dataclass(frozen=True)
class AssessmentSettings:
    level: float
    online: OnlineSettings  # each rule is replayed with these (its own `rule` aside)
    dropout_rates: tuple[float, ...]
    seed: int  # of the dropout experiment's passes

    @classmethod
    def from_config(cls, settings: Mapping) -> AssessmentSettings:
        level, online = float(settings["level"]), OnlineSettings.from_config(settings["online"])
        if online.level != level:
            raise ValueError(
                f"calibrate.online.level {online.level} differs from calibrate.level {level}: "
                "the online rules correct the headline interval"
            )
        return cls(
            level=level,
            online=online,
            dropout_rates=tuple(float(r) for r in settings["dropout_experiment"]),
            seed=int(settings["seed"]),
        )


@dataclass
class Assessment:
    metrics: dict[str, float]
    tables: dict[str, pd.DataFrame]
    online: ServedOnline  # the rule the calibrated version will serve, its bucket edges fixed


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
    column = model.spec.features.index(VOLATILITY_FEATURE)
    served = ServedOnline(
        settings.online,
        volatility_edges(segments["train"].flat[:, column], settings.online.buckets),
    )
    compared, online = online_comparison(
        calibration, test, segments["test"].flat[test.draws.rows, column], served
    )
    metrics.update(online)
    tables["coverage_by_volatility"] = coverage_by(compared, "volatility", level)
    tables["coverage_by_month"] = coverage_by(compared, "month", level)
    tables["dropout_experiment"] = dropout_experiment(
        model, segments["val"].x[val.draws.rows], val.draws.y, settings, calibration.passes
    )
    return Assessment({k: float(v) for k, v in metrics.items() if np.isfinite(v)}, tables, served)


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


def online_comparison(
    calibration: Calibration, test: Judged, vol: np.ndarray, served: ServedOnline
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Replay ACI and PID over the test days from the static calibration (with the served
    rule's settings and bucket edges, its own rule aside): the rows with the static and both
    online intervals and their volatility quintile and month (for `coverage_by`), and
    test_<rule>_* metrics."""
    settings = served.settings
    y, level = test.draws.y, settings.level
    center = test.draws.mean + test.scale * calibration.quantile(0.5)
    frame = pd.DataFrame(
        {"date": test.dates, "p10": test.low, "p50": center, "p90": test.high, "actual": y}
    ).assign(vol=vol, **{f"{STATIC}_lower": test.low, f"{STATIC}_upper": test.high})
    metrics: dict[str, float] = {}
    for rule in RULES:
        ruled = replace(settings, rule=rule)
        run = replay(frame[list(REPLAY_COLUMNS)], ruled, OnlineState.start(ruled, served.edges))
        frame[f"{rule}_lower"], frame[f"{rule}_upper"] = run.lower, run.upper
        metrics.update(
            prefixed(intervals.interval_metrics(run.lower, run.upper, y, level), f"test_{rule}")
        )
    frame["volatility"], frame["month"] = volatility_quintile(vol), month(test.dates)
    return frame, metrics


def dropout_experiment(
    model: NextdayModel, x: np.ndarray, y: np.ndarray, settings: AssessmentSettings, passes: int
) -> pd.DataFrame:
    """Raw MC coverage and width at a few inference-time dropout rates (the seed's idea)."""
    from nextday.models.mc_dropout import with_dropout_rate

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

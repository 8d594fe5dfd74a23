"""The promotion gate: which checks a new version must pass before it serves.

`acceptance` gathers what any version must show on its own (parity, calibration, the online
calibration it serves, skill), one function per check; `versus_production` is the last check,
against the version serving now (`nextday.export.promotion` runs it and acts on the result).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nextday.contracts import metrics as metric_names

if TYPE_CHECKING:
    from nextday.export.parity import CalibrationDifference, Parity
    from nextday.export.settings import ExportSettings, GateSettings
    from nextday.uncertainty.online import ServedOnline


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def acceptance(
    parity: Parity,
    metrics: Mapping[str, float],
    settings: ExportSettings,
    online: ServedOnline | None,
) -> list[Check]:
    """What any version must show on its own, from its parity results and the served
    output's metrics (`nextday.export.judging`): parity, calibration of the interval it serves
    (the online rule calibrate `online` offered, or the static interval) and skill."""
    serves = served_online(metrics, online, settings.gate)
    return [
        parity_deterministic(parity.max_abs_diff, settings.parity.tolerance),
        Check("parity_mc", parity.mc_ok, parity.mc_detail),
        parity_calibration(
            parity.calibration,
            settings.parity.calibration_tolerance,
            settings.parity.calibration_sd_ulps,
        ),
        calibration(metrics, serves, settings.gate.coverage_band),
        online_calibration(metrics, online, settings.gate),
        beats_zero(
            metric_names.read_optional(metrics, metric_names.DM_ZERO_MAE_P),
            settings.gate.significance,
        ),
    ]


def parity_deterministic(max_abs_diff: float, tolerance: float) -> Check:
    """The deterministic graph answers what Keras answers (dropout off), on every case."""
    return Check(
        "parity_deterministic",
        max_abs_diff <= tolerance,
        f"max |ONNX - Keras| {max_abs_diff:.2e} (limit {tolerance:.0e})",
    )


def parity_calibration(
    difference: CalibrationDifference, tolerance: float, sd_ulps: float
) -> Check:
    """The MC graph's calibration answers what `Calibration.apply` answers, at float32's
    precision (`CalibrationDifference`): its outputs relative to each row's sigma, given the
    graph's own MC spread, and that spread in float32 units of the row's samples."""
    return Check(
        "parity_calibration",
        difference.max_relative <= tolerance and difference.sd_ulps <= sd_ulps,
        f"max |ONNX - Calibration.apply| / sigma {difference.max_relative:.2e} on the same MC "
        f"samples (limit {tolerance:.0e}), MC spread within {difference.sd_ulps:.1f} float32 "
        f"ulps of the samples (limit {sd_ulps:g}); absolute {difference.max_abs:.2e}",
    )


def calibration(
    metrics: Mapping[str, float], serves: ServedOnline | None, band: tuple[float, float]
) -> Check:
    """The 80% interval the version serves covers about 80% of test outcomes: the online
    rule's replay over the test days when it serves one (`served_online`), else the static
    interval's test coverage."""
    low, high = band
    if serves is None:
        coverage = metric_names.read(metrics, metric_names.coverage("test", 0.8), "the export")
        which = "the static interval"
    else:
        coverage = metric_names.read(
            metrics, metric_names.coverage("test", 0.8, online=True), "the export"
        )
        which = f"{serves.settings.describe()} replayed over the test days"
    return Check(
        "calibration",
        low <= coverage <= high,
        f"serves {which}: test coverage of the 80% interval {coverage:.3f} "
        f"(band {low:.2f}-{high:.2f})",
    )


def _online_holds(metrics: Mapping[str, float], gate: GateSettings) -> tuple[bool, str]:
    """Whether the online rule, replayed over the test days on the served interval, keeps the
    coverage within the band at an interval score at most `online_score_slack` (relative)
    above the static interval's; and the figures, in words."""
    low, high = gate.coverage_band
    covered, score, static = (
        metric_names.read(metrics, name, "the export")
        for name in (
            metric_names.coverage("test", 0.8, online=True),
            metric_names.interval_score("test", 0.8, online=True),
            metric_names.interval_score("test", 0.8),
        )
    )
    limit = static * (1.0 + gate.online_score_slack)
    return low <= covered <= high and score <= limit, (
        f"on the test days coverage {covered:.3f} (band {low:.2f}-{high:.2f}), interval score "
        f"{score:.5f} vs static {static:.5f} (at most {limit:.5f})"
    )


def served_online(
    metrics: Mapping[str, float], offered: ServedOnline | None, gate: GateSettings
) -> ServedOnline | None:
    """The online rule the version serves: the one calibrate offered if its replay over the
    test days holds (`_online_holds`), else none (the static interval)."""
    return offered if offered is not None and _online_holds(metrics, gate)[0] else None


def online_calibration(
    metrics: Mapping[str, float], offered: ServedOnline | None, gate: GateSettings
) -> Check:
    """Which calibration the version serves, and why. It never holds a version back: an
    online rule whose replay does not hold leaves the version serving its static interval."""
    if offered is None:
        return Check("online_calibration", True, "serves the static interval (no online rule)")
    holds, figures = _online_holds(metrics, gate)
    rule = offered.settings.describe()
    if holds:
        return Check("online_calibration", True, f"serves {rule}: {figures}")
    return Check(
        "online_calibration",
        True,
        f"serves the static interval: {rule} did not hold over the test days ({figures})",
    )


def beats_zero(dm_p: float, significance: float) -> Check:
    """The model beats the zero predictor on test (one-sided Diebold-Mariano, absolute loss)."""
    return Check(
        "beats_zero",
        dm_p < significance,
        f"Diebold-Mariano p = {dm_p:.3g} that the model beats the zero predictor on test "
        f"(needs < {significance:g})",
    )


def versus_production(
    new_mae: float, production_mae: float | None, production_version: str | None, slack: float
) -> Check:
    """Not worse than the version serving now, on the new version's validation rows."""
    if production_version is None:
        return Check("vs_production", True, "no production version yet")
    if production_mae is None:
        return Check(
            "vs_production",
            False,
            f"production version {production_version} takes other inputs: compare by hand",
        )
    limit = production_mae * (1.0 + slack)
    return Check(
        "vs_production",
        new_mae <= limit,
        f"validation MAE {new_mae:.6f} vs production version {production_version} "
        f"{production_mae:.6f} (limit {limit:.6f})",
    )

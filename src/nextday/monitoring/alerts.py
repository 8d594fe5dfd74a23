"""The thresholds the monitor judges, and what it recommends when one is crossed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.monitoring.accuracy import LEVEL, Summary
from nextday.monitoring.drift import PREDICTION
from nextday.monitoring.settings import MonitorSettings

RETRAIN = (
    "retrain on data that includes the recent period (`python -m nextday main`, or prepare, "
    "train, calibrate and export); the export gate decides whether the new version serves"
)


# a session with bars but no daily forecast: about the schedule, not the model
FORECAST_MISSING = "forecast missing"


@dataclass(frozen=True)
class Alert:
    kind: str  # accuracy, calibration, prediction drift, feature drift or forecast missing
    message: str
    value: float
    limit: float


def alerts(summary: Summary, drifted: pd.DataFrame, settings: MonitorSettings) -> list[Alert]:
    """Every threshold crossed: the rolling MAE against `mae_multiple` x the validation MAE,
    the rolling coverage against `coverage_band`, and each drifted feature (`drift.drifted`)."""
    out = []
    limit = settings.mae_multiple * summary.val_mae
    if np.isfinite(summary.rolling_mae) and summary.rolling_mae > limit:
        out.append(
            Alert(
                "accuracy",
                f"rolling {settings.window_days}-day MAE {summary.rolling_mae:.5f} "
                f"is above {settings.mae_multiple} x the validation MAE ({limit:.5f})",
                summary.rolling_mae,
                limit,
            )
        )
    low, high = settings.coverage_band
    coverage = summary.rolling_coverage
    if np.isfinite(coverage) and not low <= coverage <= high:
        out.append(
            Alert(
                "calibration",
                f"coverage of the {LEVEL:.0%} interval over {settings.coverage_days} days is "
                f"{coverage:.3f}, outside {low}-{high}",
                coverage,
                low if coverage < low else high,
            )
        )
    for row in drifted.itertuples():
        out.append(
            Alert(
                "prediction drift" if row.feature == PREDICTION else "feature drift",
                f"{row.feature}: PSI {row.psi:.3f} > its limit {row.psi_limit:.3f} "
                f"and KS p = {row.ks_p:.2g} < {settings.ks_pvalue} over the last "
                f"{settings.drift_days} days, against the training reference",
                row.psi,
                row.psi_limit,
            )
        )
    return out

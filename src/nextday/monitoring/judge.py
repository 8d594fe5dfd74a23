"""Judge a served version's logged predictions against the reference its export saved:
accuracy, coverage and IC over rolling windows, drift of every feature and of the
prediction, and the alerts they raise."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nextday.contracts.reference import DriftReference
from nextday.data.store import Store
from nextday.evaluation.metrics import ic_undefined_reason
from nextday.monitoring import drift
from nextday.monitoring.accuracy import Summary, daily_series, summarize
from nextday.monitoring.alerts import FORECAST_MISSING, RETRAIN, Alert, alerts
from nextday.monitoring.calibration import CalibrationCheck
from nextday.monitoring.settings import MonitorSettings

if TYPE_CHECKING:
    from nextday.inference.model import ModelInference
    from nextday.monitoring.schedule import Schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Monitoring:
    predictions: pd.DataFrame  # the judged predictions, with their actuals and errors
    summary: Summary
    daily: pd.DataFrame  # see `accuracy.daily_series`
    drift: pd.DataFrame  # see `drift.drift_table`
    drifted: pd.DataFrame  # the rows of `drift` over their limits
    alerts: list[Alert]
    calibration: CalibrationCheck  # the static interval beside the online one served

    schedule: Schedule | None = None  # the daily run's, where it runs on this store

    @property
    def recommendation(self) -> str | None:
        about_the_model = [a for a in self.alerts if a.kind != FORECAST_MISSING]
        return RETRAIN if about_the_model else None

    def with_schedule(self, schedule: Schedule | None) -> Monitoring:
        """The monitoring with the daily run's schedule, and its alert where a session with
        bars has no forecast."""
        raised = list(self.alerts)
        if schedule is not None and schedule.missing:
            days = ", ".join(str(d.date()) for d in schedule.missing[:5])
            raised.append(
                Alert(
                    FORECAST_MISSING,
                    f"{len(schedule.missing)} session(s) with bars in the store but no daily "
                    f"forecast ({days}{', ...' if len(schedule.missing) > 5 else ''}): run "
                    "`python -m nextday forecast forecast.catch_up=true`",
                    float(len(schedule.missing)),
                    0.0,
                )
            )
        return replace(self, alerts=raised, schedule=schedule)

    @property
    def alert_kinds(self) -> str:
        """The kinds of the alerts raised, comma-separated, or "none"."""
        return ", ".join(a.kind for a in self.alerts) or "none"

    @property
    def metrics(self) -> dict[str, float]:
        """monitor_<summary field> (where finite), psi_max, drifted and alerts, and the
        static and online intervals' static_* and online_* (`monitoring.calibration`)."""
        summary = asdict(self.summary)
        metrics = {f"monitor_{k}": float(v) for k, v in summary.items() if np.isfinite(v)}
        metrics["monitor_psi_max"] = float(self.drift["psi"].max())
        metrics["monitor_drifted"] = float(len(self.drifted))
        metrics["monitor_alerts"] = float(len(self.alerts))
        if self.schedule is not None:
            metrics["monitor_forecast_missing_sessions"] = float(len(self.schedule.missing))
        return metrics | self.calibration.metrics

    def drift_rows(self, run_ts: pd.Timestamp, name: str, version: str) -> pd.DataFrame:
        """The drift table as the store's `model_drift` rows of this run."""
        return self.drift.drop(columns="psi_limit").assign(
            run_ts=run_ts, model_name=name, model_version=version
        )


def served_reference(model: ModelInference) -> DriftReference:
    """The training reference the export put beside the served model (reference.json)."""
    if "reference" not in model.metadata.files:
        raise ValueError(
            f"{model.name} version {model.version} was exported without the training "
            "reference (reference.json) the monitor compares with: export it again"
        )
    return DriftReference.from_json(model.folder / model.metadata.files["reference"])


def judge(
    store: Store,
    predictions: pd.DataFrame,
    reference: DriftReference,
    settings: MonitorSettings,
    actuals_before: int,
    calibration: CalibrationCheck,
) -> Monitoring:
    """Judge `predictions` (with their actuals filled; `actuals_before` of them had one
    before this run) against `reference`, with the features of their rows from `store`;
    `calibration` is the interval's check, made beside."""
    daily = daily_series(predictions, settings.window_days, settings.coverage_days)
    summary = summarize(predictions, daily, reference.val_mae, actuals_before)
    if not np.isfinite(summary.rolling_ic):
        known = predictions.dropna(subset=["actual"])
        log.info("monitor: IC %s", ic_undefined_reason(known["ts"]) or "undefined")
    if reference.window_days not in (None, settings.drift_days):
        log.warning(
            "monitor: drift_days=%s but the export measured its windows over %s days: "
            "the per-feature limits fit the export's window",
            settings.drift_days, reference.window_days,
        )  # fmt: skip
    table = drift.drift_table(store, predictions, reference, settings)
    drifted = drift.drifted(table, settings)
    raised = alerts(summary, drifted, settings)
    return Monitoring(predictions, summary, daily, table, drifted, raised, calibration)

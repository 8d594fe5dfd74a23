"""`monitor`: logged predictions get their actuals, errors, rolling accuracy, coverage and
drift against the training reference saved at export; thresholds raise alerts.

Reads the store's `model_predictions` of one registered version (`monitor.model`, default the
production version), the store's bars (for actuals) and `feature_history` (for the features of
the predicted rows). Writes the actuals and errors back (an upsert) and, for a version that
serves an online calibration, its state advanced by the days whose outcomes are now known
(`calibration_state`, in the same transaction), the drift statistics into `model_drift` (the
dashboard's drift panel), metrics (with `static_coverage_80` and `online_coverage_80` over the
coverage window) and `alerts.json` to the run, and the dashboard's panels as one HTML page
(`monitor.html`).
"""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
from omegaconf import DictConfig

from nextday.contracts import tags
from nextday.daily.calendar import TradingCalendar
from nextday.daily.lock import daily_lock
from nextday.daily.run import schedule
from nextday.daily.settings import ForecastSettings
from nextday.data.store import open_store
from nextday.models.spec import model_spec
from nextday.monitoring import calibration, report
from nextday.monitoring.actuals import fill_actuals, logged_predictions
from nextday.monitoring.judge import judge, served_reference
from nextday.monitoring.settings import MonitorSettings
from nextday.steps.inputs import model_uri
from nextday.tracking import artifact_dir, step_run

log = logging.getLogger(__name__)


def run_monitor(cfg: DictConfig) -> str:
    """Fill the actuals of a served version's logged predictions, judge them, log the alerts."""
    from nextday.inference.model import ModelInference

    settings = MonitorSettings.from_config(cfg)
    name = model_spec(cfg).name
    with step_run(cfg, "monitor", model=name) as run, artifact_dir(cfg) as out:
        uri = model_uri(cfg, name, settings.model)
        model = ModelInference(uri, device="cpu")
        reference = served_reference(model)
        mlflow.set_tags(
            {
                tags.MONITOR_MODEL: uri,
                tags.MONITOR_VERSION: model.version,
                tags.input_tag("export"): model.metadata.runs["export"],
            }
        )
        store = open_store(cfg)
        forecast = ForecastSettings.from_config(cfg)
        calendar = TradingCalendar(forecast.exchange, forecast.settle_minutes)
        with daily_lock(store, forecast.lock_timeout_s, f"monitor {model.name} v{model.version}"):
            predictions = logged_predictions(store, model.name, model.version, settings.as_of)
            before = int(predictions["actual"].notna().sum())
            predictions = fill_actuals(store, predictions)
            online, vol = model.online, calibration.prediction_volatility(store, predictions)
            advanced = calibration.record(
                store, predictions, vol, online, model.name, model.version
            )
            checked = calibration.judge(predictions, vol, online, settings.coverage_days)
            monitoring = judge(store, predictions, reference, settings, before, checked)
            monitoring = monitoring.with_schedule(schedule(store, calendar, str(cfg.data.source)))
            run_ts = pd.Timestamp.now().floor("s")
            store.upsert("model_drift", monitoring.drift_rows(run_ts, model.name, model.version))
        if monitoring.schedule is not None:
            mlflow.set_tag(tags.LAST_FORECAST, str(monitoring.schedule.last_forecast.date()))
        mlflow.log_metrics(monitoring.metrics)
        mlflow.set_tag(tags.MONITOR_ALERTS, monitoring.alert_kinds)
        folder = report.write(monitoring, model.name, model.version, settings, out / "monitor")
        mlflow.log_artifacts(str(folder), "monitor")
        for alert in monitoring.alerts:
            log.warning("monitor ALERT (%s): %s", alert.kind, alert.message)
        if monitoring.recommendation:
            log.warning("monitor: recommendation: %s", monitoring.recommendation)
        if advanced is not None:
            mlflow.log_metric("online_served_off_state", advanced.off_state)
            log.info(
                "monitor: online calibration (%s) updated with %d new day(s), through %s: "
                "multiplier %s; %d of its %d predictions were served with another multiplier",
                advanced.state.rule, advanced.days, advanced.state.through,
                ", ".join(f"{m:.3f}" for m in advanced.state.multiplier),
                advanced.off_state, advanced.rows,
            )  # fmt: skip
        summary = monitoring.summary
        log.info(
            "monitor %s v%s: %d predictions (%d with actuals), rolling MAE %.5f (validation "
            "%.5f), coverage %.3f, max PSI %.3f, %d alert(s) -> run %s",
            model.name, model.version, summary.rows, summary.rows_with_actual,
            summary.rolling_mae, summary.val_mae, summary.rolling_coverage,
            monitoring.metrics["monitor_psi_max"], len(monitoring.alerts), run.info.run_id,
        )  # fmt: skip
        return run.info.run_id

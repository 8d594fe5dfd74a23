"""`forecast`: the daily run after each close, one MLflow run per as-of session.

Brings the store up to date from the configured source (new bars only, prepare's checks),
computes the as-of close's features, scores every symbol with the production versions
(the earnings model on an earnings sample), writes `forecasts`, logs every answer once to the
prediction log, and turns the forecast into a book and orders with the backtest's rule
(`positions`). `forecast.catch_up=true` runs each missed session in order (one child run
each). The work is `nextday.daily`'s; this module finds the versions and logs.
"""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
from omegaconf import DictConfig

from nextday.contracts import tags
from nextday.daily import lock, report
from nextday.daily.calendar import TradingCalendar
from nextday.daily.run import DailyRun, Day, plan_days, run_day
from nextday.daily.scoring import Scorers, check_inputs
from nextday.daily.settings import ForecastSettings
from nextday.data.store import open_store
from nextday.export import registry
from nextday.monitoring.settings import LiveSettings
from nextday.timing import stage
from nextday.tracking import artifact_dir, configure, step_run

log = logging.getLogger(__name__)


def run_forecast(cfg: DictConfig, now: pd.Timestamp | None = None) -> list[str]:
    """Forecast the planned as-of sessions; returns their run ids. `now` (tz-aware) stands in
    for the clock in tests and replays."""
    settings = ForecastSettings.from_config(cfg)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    calendar = TradingCalendar(settings.exchange, settings.settle_minutes)
    store = open_store(cfg)
    configure(cfg)
    what = f"forecast ({settings.session})"
    seconds: dict[str, float] = {}  # what the days share: logged on the first day's run
    with lock.daily_lock(store, settings.lock_timeout_s, what):
        with stage("forecast", "plan", seconds):
            days = plan_days(store, calendar, settings, str(cfg.data.source), now)
        synthetic = str(cfg.data.source) == "synthetic"
        continued = LiveSettings.from_config(cfg) if synthetic else None
        with stage("forecast", "models", seconds):
            scorers = production_scorers(cfg, settings)
        run = DailyRun(settings, store, calendar, cfg.data, cfg.quality, scorers, continued)
        if len(days) == 1:
            return [_one_day(cfg, run, days[0], now, seconds)]
        with step_run(cfg, "forecast") as parent:
            mlflow.set_tags({tags.AS_OF: f"{days[0].date()}..{days[-1].date()}"})
            log.info(
                "forecast: catching up %d sessions, %s to %s",
                len(days),
                *(d.date() for d in (days[0], days[-1])),
            )
            ids = [
                _one_day(cfg, run, day, now, seconds if not k else {}) for k, day in enumerate(days)
            ]
            mlflow.log_metric("forecast_days", float(len(ids)))
            log.info("forecast: %d sessions -> parent run %s", len(ids), parent.info.run_id)
            return ids


def production_scorers(cfg: DictConfig, settings: ForecastSettings) -> Scorers:
    """ModelInference of each model's @production version, with the online calibration read
    from the store on every call; a model without one is named with the reason."""
    from nextday.inference.model import ModelInference
    from nextday.uncertainty.stored_state import CalibrationStore

    client = mlflow.MlflowClient()
    reading = CalibrationStore(
        str(cfg.store.url), ttl=0.0, password_env=cfg.store.get("password_env")
    )
    scorers = Scorers()
    for model in settings.models:
        name = registry.registered_name(settings.registered_model_prefix, model)
        version = registry.version_by_alias(client, name, registry.PRODUCTION)
        if version is None:
            scorers.missing[model] = f"{name} has no @{registry.PRODUCTION} version"
            continue
        inference = ModelInference(
            f"models:/{name}/{version.version}", device="cpu", calibration=reading
        )
        check_inputs(inference, model)
        scorers.models[model] = inference
    if not scorers.models:
        from nextday.daily import ForecastRefused

        raise ForecastRefused(
            "no model to score with: "
            + "; ".join(scorers.missing.values())
            + " (export promotes a version that passes the gate; `python -m nextday promote "
            "model=<model> version=<n>` promotes one by hand)"
        )
    return scorers


def _one_day(
    cfg: DictConfig, daily: DailyRun, as_of: pd.Timestamp, now: pd.Timestamp, shared: dict
) -> str:
    """One as-of day as its own MLflow run; `shared`: the seconds of the stages before it
    (plan, models), on the first day's run."""
    with step_run(cfg, "forecast") as run, artifact_dir(cfg) as out:
        day = run_day(daily, as_of, now, run_id=run.info.run_id)
        day.seconds = shared | day.seconds
        versions = daily.scorers.describe()
        folder = report.write(day, versions, out / "forecast")
        mlflow.log_artifacts(str(folder), "forecast")
        mlflow.log_metrics(day.metrics)
        mlflow.set_tags(
            {
                tags.AS_OF: str(day.as_of.date()),
                tags.TARGET_DATE: str(day.target.date()),
                tags.FORECAST_SESSION: day.session,
                tags.RESTATED: ",".join(day.update.restated_symbols)[:500] or "none",
                **{f"{tags.FORECAST_VERSION}{m}": v for m, v in versions.items()},
            }
        )
        _say(day, versions, run.info.run_id)
        return run.info.run_id


def _say(day: Day, versions: dict[str, str], run_id: str) -> None:
    if len(day.update.restated):
        log.warning(
            "forecast: the source restated %d value(s) of stored bars of %s; the stored "
            "history was kept: re-run prepare to take the restated history whole",
            len(day.update.restated), ", ".join(day.update.restated_symbols[:10]),
        )  # fmt: skip
    for note in day.scored.notes:
        log.warning("forecast: %s", note)
    if day.skipped:
        log.info("forecast: %d symbol(s) skipped (forecast/skipped.csv)", len(day.skipped))
    log.info(
        "forecast %s (%s) for %s: %d symbols (%s), %d orders, turnover %.3f -> run %s",
        day.as_of.date(), day.session, day.target.date(), len(day.forecast),
        "; ".join(f"{m} {v}" for m, v in versions.items()),
        len(day.book.orders) if day.book else 0, day.book.turnover if day.book else 0.0, run_id,
    )  # fmt: skip

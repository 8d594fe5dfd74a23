"""`live`: the daily run replayed over simulated days, for the monitor to judge.

The built-in market continues past the last bar prepare stored (`live.days` sessions, with a
regime change from `live.change.after_days` on when set), and each simulated close goes
through the daily run's own code (`nextday.daily.run.run_day`), as `forecast` runs it each
evening: the new bars into the store, the outcomes they complete learnt by the version's
online calibration, the features, the version's answers (every one logged to
`model_predictions`), the forecast and the book. Then `python -m nextday monitor` judges them.
The run logs the static and the served interval's coverage before and after the planted
change (`live_{static,online}_coverage_80_{before,after,window}`).

The period is a function of the config: running it again clears the period's rows and
replays it.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import mlflow
import pandas as pd
from omegaconf import DictConfig

from nextday.contracts import artifacts, tags
from nextday.daily.calendar import WEEKDAYS, TradingCalendar
from nextday.daily.run import DailyRun, run_day
from nextday.daily.scoring import EARNINGS, NORMAL, Scorers, check_inputs
from nextday.daily.settings import ForecastSettings
from nextday.data.store import open_store
from nextday.models.spec import model_spec
from nextday.monitoring import calibration, live
from nextday.monitoring.settings import LiveSettings
from nextday.steps.inputs import model_uri
from nextday.tracking import step_run

log = logging.getLogger(__name__)

# when a simulated close is replayed: an hour after it, as a scheduled evening run would be
RUN_AFTER_CLOSE = pd.Timedelta(hours=1)


def run_live(cfg: DictConfig) -> str:
    """Continue the prepared market and replay the daily run over it, one close at a time."""
    from nextday.inference.model import ModelInference
    from nextday.uncertainty.stored_state import CalibrationStore

    settings = LiveSettings.from_config(cfg)
    spec = model_spec(cfg)
    with step_run(cfg, "live", model=spec.name) as run:
        uri = model_uri(cfg, spec.name, settings.model)
        password_env = cfg.store.get("password_env")
        # the state is read on every day's call (ttl 0): each day's update lands before it
        reading = CalibrationStore(str(cfg.store.url), ttl=0.0, password_env=password_env)
        model = ModelInference(uri, device="cpu", calibration=reading)
        check_inputs(model, spec.name)
        runs = model.metadata.runs
        config = mlflow.artifacts.load_text(f"runs:/{runs['prepare']}/{artifacts.CONFIG.path}")
        data = live.prepared_market(config, runs["prepare"])  # refused before any write
        store = open_store(cfg)
        calendar = TradingCalendar(WEEKDAYS)  # the built-in market's
        days = _live_days(calendar, live.last_prepared_bar(store), settings.days)
        other = EARNINGS if spec.name == NORMAL else NORMAL
        scorers = Scorers(
            models={spec.name: model},
            missing={other: f"live replays {model.name} v{model.version} alone"},
            fallback=False,
        )
        daily = DailyRun(
            replace(
                ForecastSettings.from_config(cfg),
                as_of=None, session="evening", catch_up=False, models=(spec.name,),
            ),
            store, calendar, data, cfg.quality, scorers, settings,
        )  # fmt: skip
        live.clear(store, days[0], model.name)
        calibration.restart(store, model.online, model.name, model.version)
        for day in days:
            run_day(daily, day, now=calendar.close_time(day) + RUN_AFTER_CLOSE)
        period = live.LivePeriod(days, calendar.previous_session(days[0]), settings.change)
        mlflow.set_tags(
            {
                tags.input_tag("prepare"): runs["prepare"],
                tags.input_tag("export"): runs["export"],
                tags.LIVE_MODEL: uri,
                tags.LIVE_VERSION: model.version,
                tags.LIVE_FIRST_DATE: str(days[0].date()),
                tags.LIVE_LAST_DATE: str(days[-1].date()),
                tags.LIVE_CHANGE: period.describe_change(),
            }
        )
        logged = store.read(
            "model_predictions",
            "model_name = :name and model_version = :version and ts >= :first",
            {"name": model.name, "version": model.version, "first": days[0].date()},
        )
        window = int(cfg.monitor.coverage_days)
        mlflow.log_metrics(
            {
                "live_days": float(len(days)),
                "live_predictions": float(len(logged)),
                "live_latency_ms_p50": live.logged_latency_p50(
                    store, model.name, model.version, days[0]
                ),
                **live.served_coverage(store, model, period, window),
            }
        )
        change = period.change_date
        log.info(
            "live: %d days after %s (%s), %d predictions of %s v%s logged -> run %s; "
            "now run `python -m nextday monitor` to judge them",
            len(days), period.after.date(),
            f"regime change on {change.date()}" if change is not None else "no change",
            len(logged), model.name, model.version, run.info.run_id,
        )  # fmt: skip
        return run.info.run_id


def _live_days(calendar: TradingCalendar, last: pd.Timestamp, days: int) -> pd.DatetimeIndex:
    if days < 1:
        raise ValueError(f"live.days must be at least 1, got {days}")
    first = calendar.next_session(last)
    return calendar.sessions(first, first + pd.Timedelta(days=2 * days + 7))[:days]

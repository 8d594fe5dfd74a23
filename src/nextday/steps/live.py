"""`live`: a simulated live period for the monitor to judge.

The built-in market continues past the last bar prepare stored (`live.days` trading days,
with a regime change from `live.change.after_days` on when set). The new bars, reports and
features go into the store as the data feed of a live system would put them there, and the
model answers each new day's cross-section through ModelInference with a PredictionLogger,
as a service would: every prediction lands in `model_predictions` with its latency. Then
`python -m nextday monitor` fills in the actuals and judges accuracy, coverage and drift.

For a version with an online calibration, the daily monitor's update of the online state is
played between the days (from the static calibration on the first live day), and the run logs
the static and the served interval's coverage before and after the planted change
(`live_{static,online}_coverage_80_{before,after,window}`).

The period is a function of the config: running it again rewrites the same rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from nextday.contracts import artifacts, tags
from nextday.models.data import row_filter
from nextday.models.spec import model_spec
from nextday.monitoring import live
from nextday.monitoring.settings import LiveSettings
from nextday.steps.inputs import model_uri
from nextday.steps.prepare import open_store
from nextday.tracking import step_run

log = logging.getLogger(__name__)


def run_live(cfg: DictConfig) -> str:
    """Continue the prepared market, serve each new day and log every answer."""
    from nextday.inference.model import ModelInference
    from nextday.monitoring.logger import DEAD_LETTER_NAME, PredictionLogger
    from nextday.uncertainty.stored_state import CalibrationStore

    settings = LiveSettings.from_config(cfg)
    spec = model_spec(cfg)
    with step_run(cfg, "live", model=spec.name) as run:
        uri = model_uri(cfg, spec.name, settings.model)
        password_env = cfg.store.get("password_env")
        # the state is read on every day's call (ttl 0): the daily update lands before it
        reading = CalibrationStore(str(cfg.store.url), ttl=0.0, password_env=password_env)
        model = ModelInference(uri, device="cpu", calibration=reading)
        live.require_row_model(model, uri)
        runs = model.metadata.runs
        config = mlflow.artifacts.load_text(f"runs:/{runs['prepare']}/{artifacts.CONFIG.path}")
        market = live.prepared_market(config, runs["prepare"])  # refused before any write
        store = open_store(cfg)
        period = live.simulate(market, store, settings)
        logger = PredictionLogger(
            str(cfg.store.url),
            background=False,
            password_env=password_env,
            dead_letter=Path(str(cfg.paths.root)) / DEAD_LETTER_NAME,
        )
        served = period.features[row_filter(period.features, spec.evaluate_rows)]
        written = live.serve(model, served, logger, store)
        dates = period.dates
        mlflow.set_tags(
            {
                tags.input_tag("prepare"): runs["prepare"],
                tags.input_tag("export"): runs["export"],
                tags.LIVE_MODEL: uri,
                tags.LIVE_VERSION: model.version,
                tags.LIVE_FIRST_DATE: str(dates[0].date()),
                tags.LIVE_LAST_DATE: str(dates[-1].date()),
                tags.LIVE_CHANGE: period.describe_change(),
            }
        )
        latency = live.logged_latency_p50(store, model.name, model.version, dates[0])
        window = int(cfg.monitor.coverage_days)
        coverage = live.served_coverage(store, model, period, window)
        mlflow.log_metrics(
            {
                "live_days": float(len(dates)),
                "live_predictions": float(written),
                "live_latency_ms_p50": latency,
                **coverage,
            }
        )
        change = period.change_date
        log.info(
            "live: %d days after %s (%s), %d predictions of %s v%s logged -> run %s; "
            "now run `python -m nextday monitor` to judge them",
            len(dates), period.after.date(),
            f"regime change on {change.date()}" if change is not None else "no change",
            written, model.name, model.version, run.info.run_id,
        )  # fmt: skip
        return run.info.run_id

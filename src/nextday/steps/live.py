"""`live`: a simulated live period for the monitor to judge.

The built-in market continues past the last bar prepare stored (`live.days` trading days,
with a regime change from `live.change.after_days` on when set). The new bars, reports and
features go into the store as the data feed of a live system would put them there, and the
model answers each new day's cross-section through ModelInference with a PredictionLogger,
as a service would: every prediction lands in `model_predictions` with its latency. Then
`python -m nextday monitor` fills in the actuals and judges accuracy, coverage and drift.

The period is a function of the config: running it again rewrites the same rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import sqlalchemy as sa
from omegaconf import DictConfig, OmegaConf

from nextday.data.schema import EARNINGS_COLUMNS, OHLCV_COLUMNS, RawMarket
from nextday.data.synthetic import RegimeChange, spec_from_config
from nextday.models.data import row_filter
from nextday.models.spec import model_spec
from nextday.monitoring.live import HISTORY_DAYS, continue_market, live_features
from nextday.steps.inputs import model_uri
from nextday.steps.prepare import open_store
from nextday.tracking import INPUT_TAG, step_run

log = logging.getLogger(__name__)

SOURCE = "synthetic"
LIVE_SOURCE = "synthetic-live"


def run_live(cfg: DictConfig) -> str:
    from nextday.inference.model import ModelInference
    from nextday.monitoring.logger import DEAD_LETTER_NAME, PredictionLogger

    settings = cfg.live
    spec = model_spec(cfg)
    with step_run(cfg, "live", model=spec.name) as run:
        uri = model_uri(cfg, spec.name, settings.model)
        model = ModelInference(uri, device="cpu")
        if model.window > 1:
            raise ValueError(
                f"{uri} is a sequence model: live serves one feature row per symbol and day, "
                "not the window of past rows an LSTM takes"
            )
        runs = model.metadata["runs"]
        prepare_id = runs["prepare"]
        market_spec = _prepared_market(prepare_id)
        store = open_store(cfg)
        history = _history(store)
        change = None
        if settings.change.after_days is not None:
            change = RegimeChange(
                day=int(settings.change.after_days),
                regime=str(settings.change.regime),
                vol_scale=float(settings.change.vol_scale),
            )
        live = continue_market(market_spec, history, int(settings.days), change)
        features = live_features(history, live, int(cfg.features.max_days_since_earnings))
        store.upsert_many(
            {
                "ohlcv": live.ohlcv.assign(source=LIVE_SOURCE),
                "earnings": live.earnings.assign(source=LIVE_SOURCE),
                "feature_history": features,
            }
        )

        logger = PredictionLogger(
            str(cfg.store.url),
            background=False,
            password_env=cfg.store.get("password_env"),
            dead_letter=Path(str(cfg.paths.root)) / DEAD_LETTER_NAME,
        )
        model.logger = logger  # from now on every answer is logged, as a service's would be
        served = features[row_filter(features, spec.evaluate_rows)]
        for _, day in served.groupby("ts", sort=True):
            model.predict_batch(
                day[model.features], keys=day[["symbol", "ts"]].rename(columns={"ts": "date"})
            )
            logger.flush()
        logger.close()
        if logger.dropped or logger.rejected or logger.unwritten:
            raise RuntimeError(
                f"{logger.dropped} predictions dropped, {logger.rejected} refused and "
                f"{logger.unwritten} not written (see {logger.dead_letter}): the store did not "
                "take the prediction log"
            )

        dates = pd.to_datetime(live.ohlcv["ts"]).sort_values().unique()
        change_date = dates[change.day] if change is not None and change.day < len(dates) else None
        mlflow.set_tags(
            {
                f"{INPUT_TAG}prepare": prepare_id,
                f"{INPUT_TAG}export": runs["export"],
                "nextday.live.model": uri,
                "nextday.live.version": model.version,
                "nextday.live.first_date": str(dates[0].date()),
                "nextday.live.last_date": str(dates[-1].date()),
                "nextday.live.change": (
                    f"{change.regime} x{change.vol_scale} volatility from {change_date.date()}"
                    if change_date is not None
                    else "none"
                ),
            }
        )
        logged = store.read(
            "model_predictions",
            "model_name = :name and model_version = :version and ts >= :first",
            {"name": model.name, "version": model.version, "first": dates[0].date()},
        )
        mlflow.log_metrics(
            {
                "live_days": float(len(dates)),
                "live_predictions": float(logger.written),
                "live_latency_ms_p50": float(np.median(logged["latency_ms"])),
            }
        )
        log.info(
            "live: %d days after %s (%s), %d predictions of %s v%s logged -> run %s; "
            "now run `python -m nextday monitor` to judge them",
            len(dates), pd.Timestamp(history.ohlcv["ts"].max()).date(),
            f"regime change on {change_date.date()}" if change_date is not None else "no change",
            logger.written, model.name, model.version, run.info.run_id,
        )  # fmt: skip
        return run.info.run_id


def _prepared_market(prepare_id: str):
    """The synthetic market spec the model's prepare run generated."""
    text = mlflow.artifacts.load_text(f"runs:/{prepare_id}/config.yaml")
    data = OmegaConf.create(text).data
    if str(data.source) != SOURCE:
        raise ValueError(
            f"live continues the built-in synthetic market; the model was trained on "
            f"data={data.source} (prepare run {prepare_id})"
        )
    return spec_from_config(data)


def _history(store) -> RawMarket:
    """The prepared market's last HISTORY_DAYS bars and all its reports, from the store."""
    with store.engine.connect() as connection:
        dates = [
            row[0]
            for row in connection.execute(
                sa.text(
                    "SELECT DISTINCT ts FROM ohlcv WHERE source = :source ORDER BY ts DESC "
                    "LIMIT :days"
                ),
                {"source": SOURCE, "days": HISTORY_DAYS},
            )
        ]
    if not dates:
        raise ValueError(
            "the store holds no bars of the synthetic market: run "
            "`python -m nextday prepare` first (with the same store)"
        )
    params = {"source": SOURCE, "first": pd.Timestamp(min(dates)).to_pydatetime()}
    ohlcv = store.read("ohlcv", "source = :source and ts >= :first", params)
    earnings = store.read("earnings", "source = :source", {"source": SOURCE})
    return RawMarket(ohlcv=ohlcv[OHLCV_COLUMNS], earnings=earnings[EARNINGS_COLUMNS], source=SOURCE)

"""`backtest`: walk-forward predictions with no future data, judged as forecasts and as a
long-short strategy beside the baselines and the market, broken down by regime.

Reads a registered version or alias, or a run's model (`backtest.model`), and the prepare run
it was trained from. Writes `bt_*` metrics, PNG plots, the daily series (Parquet), the
predictions (Parquet; optionally into the store's `model_predictions`), and `backtest.html`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from nextday.backtest import guard, report, walkforward
from nextday.backtest.costs import frictions
from nextday.backtest.judge import SECONDS, Market, judge, stage_metrics
from nextday.backtest.settings import BacktestSettings
from nextday.contracts import artifacts, tags
from nextday.contracts import metrics as metric_names
from nextday.data.store import open_store
from nextday.models.spec import ModelSpec, model_spec
from nextday.steps.inputs import download, has_artifact, load_prepared, model_uri, transfer_source
from nextday.timing import stage
from nextday.tracking import artifact_dir, step_run

log = logging.getLogger(__name__)


def run_backtest(cfg: DictConfig) -> str:
    """Walk the served (or, mode=refit, refitted) model over the period, judge it, log it."""
    from nextday.inference.model import ModelInference

    settings = BacktestSettings.from_config(cfg)
    name = model_spec(cfg).name
    with step_run(cfg, "backtest", model=name) as run, artifact_dir(cfg) as out:
        started = time.perf_counter()
        uri = model_uri(cfg, name, settings.model)
        inference = ModelInference(uri, device="cpu")
        spec = ModelSpec.from_dict(inference.metadata.hyperparameters)
        if spec.name != name:
            raise ValueError(f"{uri} is a {spec.name} model, not model={name}")
        prepare_id = cfg.inputs.get("prepare_run_id") or inference.metadata.runs["prepare"]
        mlflow.set_tags(
            {
                tags.input_tag("prepare"): prepare_id,
                tags.input_tag("export"): inference.metadata.runs["export"],
                tags.BACKTEST_MODEL: uri,
                tags.BACKTEST_VERSION: str(inference.version),
                tags.BACKTEST_MODE: settings.mode,
            }
        )
        prepared = load_prepared(prepare_id, out / "inputs")
        dataset, seconds = prepared.dataset, dict[str, float]()
        with stage("backtest", "predict", seconds):
            walk = _walk(cfg, settings, spec, inference, prepared, out)
        with stage("backtest", "leak guard and costs", seconds):
            store = open_store(cfg)
            bars, reports = store.read("ohlcv"), store.read("earnings")
            checks = guard.sampled_point_in_time(
                bars, reports, walk.rows, dataset, list(spec.features),
                settings.guard_dates, settings.max_days_since_earnings,
            )  # fmt: skip
            bars = bars[bars["symbol"].isin(set(dataset["symbol"]))]
            market = Market(
                frictions(bars, settings.costs, walk.rows["date"].unique()),
                prepared.groups,
                _true_regimes(prepare_id, out / "inputs"),
                pd.DatetimeIndex(np.sort(bars["ts"].unique())),
            )
        trials = _study_trials(inference.metadata.runs.get("train"))
        # a fixed backtest replays the rule the version serves; refit models are not versions
        served = inference.online if settings.mode == "fixed" else None
        backtest = judge(walk, dataset, settings, market, name == "earnings", trials, served)
        subject = report.Subject(name, spec.arch, uri, str(inference.version))
        with stage("backtest", "report", seconds):
            folder = report.write(backtest, subject, settings, checks, out / "backtest")
        backtest.metrics |= stage_metrics(seconds)
        backtest.metrics[SECONDS] = time.perf_counter() - started
        mlflow.log_metrics({k: float(v) for k, v in backtest.metrics.items() if np.isfinite(v)})
        mlflow.log_artifacts(str(folder), "backtest")
        if settings.write_predictions:
            rows = report.predictions_table(backtest.rows, inference.name, str(inference.version))
            written = open_store(cfg).upsert("model_predictions", rows)
            log.info("backtest: %d predictions upserted into model_predictions", written)
        log.info(
            "backtest %s (%s) -> run %s", name, report.headline(backtest, settings), run.info.run_id
        )
        return run.info.run_id


def _walk(cfg, settings, spec, inference, prepared, out: Path) -> walkforward.WalkForward:
    """The predictions over the period: the served model as it is, or refitted fold by fold."""
    if settings.mode == "refit":
        period = walkforward.period_dates(prepared.dataset, settings.segments)
        source = transfer_source(cfg, spec, out / "transfer")
        return walkforward.refit(
            spec, cfg, prepared.dataset, prepared.truth, period, out / "folds", source
        )
    return walkforward.fixed(
        inference, spec, prepared.dataset, prepared.truth, settings, cfg.train.baselines
    )


def _study_trials(run_id: str | None) -> int | None:
    """How many trials the tuning study behind the model ran (None: not tuned)."""
    if not run_id:
        return None
    run = mlflow.get_run(run_id)
    if tags.STUDY not in run.data.tags:
        return None
    trials = metric_names.read(run.data.metrics, metric_names.STUDY_TRIALS, f"tune run {run_id}")
    return int(trials) or None


def _true_regimes(prepare_id: str, folder: Path) -> pd.DataFrame | None:
    """The synthetic generator's regime per date (ts, regime), when prepare logged one."""
    if not has_artifact(prepare_id, artifacts.REGIMES):
        return None
    return pd.read_csv(download(prepare_id, artifacts.REGIMES, folder), parse_dates=["ts"])

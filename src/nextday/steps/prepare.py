"""`prepare`: raw data from a source -> validated bars in the store -> features -> the dataset.

Logs one MLflow run (tag nextday.step=prepare) with the dataset (Parquet, registered with
`mlflow.log_input`), features.json, the data-quality report, the market-facts report, the
exploratory report, the split table and the oracle (synthetic data only, kept apart).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature
from omegaconf import DictConfig

from nextday.contracts import artifacts, tags
from nextday.data.quality import validate
from nextday.data.sources import load_market
from nextday.data.store import open_store
from nextday.dataset.build import build_dataset
from nextday.reports.prepare import prepare_metrics, write_reports
from nextday.timing import stage
from nextday.tracking import artifact_dir, step_run

log = logging.getLogger(__name__)

DEGENERATE_POLICIES = ("drop", "keep")


def _stage(name: str, timings: dict[str, float]):
    return stage("prepare", name, timings)


def run_prepare(cfg: DictConfig) -> str:
    """Run prepare as an MLflow run and return its run id."""
    timings: dict[str, float] = {}
    if str(cfg.quality.degenerate_features) not in DEGENERATE_POLICIES:
        raise ValueError(
            f"quality.degenerate_features={cfg.quality.degenerate_features!r}: expected one of "
            f"{DEGENERATE_POLICIES}"
        )
    with step_run(cfg, "prepare") as run, artifact_dir(cfg) as out:
        with _stage("connect store", timings):
            store = open_store(cfg)
        mlflow.set_tag(tags.STORE, store.display_url)
        with _stage(f"load {cfg.data.source} data", timings):
            market = load_market(cfg.data)
        with _stage("validate", timings):
            market, quality = validate(market, cfg.quality)
        with _stage("features, labels, splits", timings):
            build = build_dataset(
                market,
                warmup_days=int(cfg.features.warmup_days),
                max_days_since_earnings=int(cfg.features.max_days_since_earnings),
                label_outlier=float(cfg.features.label_outlier),
                split=dict(cfg.split),
            )
        with _stage("write store", timings):
            written = store.upsert_many(
                {
                    "ohlcv": market.ohlcv.assign(source=market.source),
                    "earnings": market.earnings.assign(source=market.source),
                    "feature_history": build.feature_history,
                }
            )
        with _stage("reports", timings):
            report_metrics = write_reports(cfg, market, quality, build, out)
        with _stage("log artifacts", timings):
            _log_dataset(build, market.symbols, out, str(cfg.quality.degenerate_features))
            mlflow.log_artifacts(str(out))

        dataset = build.dataset
        metrics = prepare_metrics(quality, build, written, timings)
        mlflow.log_metrics(metrics | report_metrics)
        mlflow.set_tags(
            {
                tags.DATA_SOURCE: market.source,
                tags.DATA_FIRST_DATE: str(dataset["date"].min().date()),
                tags.DATA_LAST_DATE: str(dataset["date"].max().date()),
            }
        )
        _warn(market.notes, build.degenerate, str(cfg.quality.degenerate_features))
        log.info(
            "prepare: %s rows, %s symbols, %s earnings samples -> run %s",
            f"{len(dataset):,}",
            dataset["symbol"].nunique(),
            int(dataset["is_earnings"].sum()),
            run.info.run_id,
        )
        return run.info.run_id


def _warn(notes: list[str], degenerate: dict[str, str], policy: str) -> None:
    """What the data made prepare decide or notice, in the log."""
    for note in notes:
        log.warning("prepare: %s", note)
    if degenerate:
        log.warning(
            "prepare: %d feature(s) carry nothing on this data (%s): %s",
            len(degenerate),
            "dropped from every model" if policy == "drop" else "kept",
            "; ".join(f"{name}: {why}" for name, why in degenerate.items()),
        )


def _dataset_source(uri: str):
    """The dataset's source for its artifact URI. MLflow resolves file:/ s3:/ gs:/ ... URIs,
    but has no source for mlflow-artifacts:/ (a tracking server that proxies artifacts): that
    one is recorded as the server's HTTP URL for the same file."""
    if not uri.startswith("mlflow-artifacts:"):
        return resolve_dataset_source(uri)
    from urllib.parse import urlparse

    from mlflow.data.http_dataset_source import HTTPDatasetSource

    parsed = urlparse(uri)
    base = f"http://{parsed.netloc}" if parsed.netloc else mlflow.get_tracking_uri()
    path = parsed.path.lstrip("/")
    return HTTPDatasetSource(f"{base.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/{path}")


def _log_dataset(build, symbols: pd.DataFrame | None, out: Path, degenerate_policy: str) -> None:
    path = out / artifacts.DATASET.path
    path.parent.mkdir(parents=True, exist_ok=True)
    build.dataset.to_parquet(path, index=False, compression="zstd")
    if symbols is not None and "sector" in symbols:
        groups = symbols[symbols["symbol"].isin(set(build.dataset["symbol"]))]
        groups[["symbol", "sector"]].rename(columns={"sector": "group"}).to_csv(
            out / artifacts.GROUPS.path, index=False
        )
    # A metadata-only dataset: MLflow's from_pandas profiles the whole frame, which takes
    # longer than all of prepare at the seed's scale. The digest is the Parquet file's hash.
    (out / artifacts.DEGENERATE_FEATURES.path).write_text(
        json.dumps({"policy": degenerate_policy, "features": build.degenerate}, indent=2)
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    with warnings.catch_warnings():
        # a local artifact URI matches two equivalent source types; MLflow picks either
        warnings.filterwarnings("ignore", message="The specified dataset source")
        source = _dataset_source(mlflow.get_artifact_uri(artifacts.DATASET.path))
    schema = infer_signature(build.dataset.head(1000)).inputs
    dataset = MetaDataset(source, name="nextday-dataset", digest=digest, schema=schema)
    mlflow.log_input(dataset, context="prepare")
    if build.truth is not None:
        truth_path = out / artifacts.TRUTH.path
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        build.truth.to_parquet(truth_path, index=False)

"""Read what upstream runs logged: the prepared dataset, the oracle and trained models."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from omegaconf import DictConfig

from nextday.contracts import artifacts, tags
from nextday.export import registry
from nextday.models.data import check_segments, segment_counts, without_features
from nextday.models.model import NextdayModel
from nextday.models.spec import ModelSpec, model_spec
from nextday.tracking import find_input_run, input_experiments

log = logging.getLogger(__name__)

MODEL_STEPS = ("train", "tune")  # the steps whose runs hold a trained model


@dataclass
class Prepared:
    run_id: str
    dataset: pd.DataFrame
    truth: pd.DataFrame | None
    # features prepare found degenerate and dropped (quality.degenerate_features=drop)
    dropped_features: dict[str, str] = field(default_factory=dict)
    groups: pd.Series | None = None  # symbol -> group (sector), where the source has one


def download(run_id: str, artifact: artifacts.Artifact | str, folder: Path) -> Path:
    """One artifact (file or folder) of a run, downloaded under `folder`."""
    path = artifact.path if isinstance(artifact, artifacts.Artifact) else artifact
    return Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(folder))
    )


def has_artifact(run_id: str, artifact: artifacts.Artifact) -> bool:
    listed = mlflow.MlflowClient().list_artifacts(run_id, artifact.folder or None)
    return artifact.path in {f.path for f in listed}


def find_model_run(model: str, run_id: str | None):
    """The model run to calibrate: `run_id`, or the newest finished train or tune run of
    `model` in this experiment that logged a model."""
    return find_input_run(
        MODEL_STEPS,
        run_id,
        model=model,
        accept=lambda run: has_artifact(run.info.run_id, artifacts.CHECKPOINT),
        hint=f"run `python -m nextday train model={model}` or pass inputs.model_run_id=<run id>",
    )


def load_model(run_id: str, folder: Path) -> NextdayModel:
    """The trained model (best weights) of a train or tune run."""
    return NextdayModel.load(download(run_id, artifacts.MODEL_FILES, folder))


def load_prepared(run_id: str, folder: Path) -> Prepared:
    """The dataset (and the oracle, on synthetic data) of a prepare run."""
    dataset = pd.read_parquet(download(run_id, artifacts.DATASET, folder))
    truth = None
    if has_artifact(run_id, artifacts.TRUTH):
        truth = pd.read_parquet(download(run_id, artifacts.TRUTH, folder))
    dropped: dict[str, str] = {}
    if has_artifact(run_id, artifacts.DEGENERATE_FEATURES):
        found = json.loads(download(run_id, artifacts.DEGENERATE_FEATURES, folder).read_text())
        dropped = found["features"] if found["policy"] == "drop" else {}
    groups = None
    if has_artifact(run_id, artifacts.GROUPS):
        table = pd.read_csv(download(run_id, artifacts.GROUPS, folder), dtype=str)
        groups = table.set_index("symbol")["group"]
    return Prepared(run_id, dataset, truth, dropped, groups)


def prepared_spec(cfg: DictConfig, prepared: Prepared) -> ModelSpec:
    """The model of `cfg` as this dataset allows it: refused at once (before any fitting)
    when a segment has too few rows for it, and without the features prepare dropped."""
    spec = model_spec(cfg)
    check_segments(spec, segment_counts(prepared.dataset), int(cfg.model.min_segment_rows))
    narrowed = without_features(spec, prepared.dropped_features)
    if narrowed.features != spec.features:
        removed = [f for f in spec.features if f not in narrowed.features]
        log.warning(
            "model=%s: %d degenerate feature(s) dropped on this data: %s",
            spec.name,
            len(removed),
            ", ".join(f"{f} ({prepared.dropped_features[f]})" for f in removed),
        )
    return narrowed


def model_uri(cfg: DictConfig, name: str, explicit: str | None = None) -> str:
    """`explicit` (a models:/ or runs:/ URI), else the production version of `name`, else the
    newest export run's model (for steps that judge a served model: backtest, monitor)."""
    if explicit:
        return str(explicit)
    client = mlflow.MlflowClient()
    registered = registry.registered_name(str(cfg.export.registered_model_prefix), name)
    if registry.version_by_alias(client, registered, registry.PRODUCTION) is not None:
        return f"models:/{registered}@{registry.PRODUCTION}"
    runs = client.search_runs(
        input_experiments(),
        f"tags.`{tags.STEP}` = 'export' and tags.`{tags.MODEL}` = '{name}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise ValueError(
            f"no model: {registered} has no production version and no export run of "
            f"model={name} exists; run `python -m nextday export model={name}` or pass a "
            "models:/ or runs:/ URI (backtest.model, monitor.model)"
        )
    log.info("%s has no production version; using the newest export", registered)
    return f"runs:/{runs[0].info.run_id}/{artifacts.SERVED_MODEL.path}"


def transfer_source(cfg: DictConfig, spec: ModelSpec, folder: Path) -> NextdayModel | None:
    """model.transfer_from: a trained normal model (`latest` or a train run id) whose weights
    a model of `spec` starts from (train, each tune trial, each refit fold); None when not set."""
    source = cfg.model.get("transfer_from")
    if not source:
        return None
    source = str(source)
    if source == "latest":
        query = (
            f"tags.`{tags.STEP}` = 'train' and tags.`{tags.MODEL}` = 'normal' "
            f"and attributes.status = 'FINISHED' and params.`arch.name` = '{spec.arch}'"
        )
        runs = mlflow.search_runs(
            input_experiments(),
            query,
            order_by=["start_time DESC"],
            max_results=1,
        )
        if runs.empty:
            raise LookupError(
                f"model.transfer_from=latest: no finished normal {spec.arch} train run"
            )
        source = runs.iloc[0]["run_id"]
    mlflow.set_tag(tags.TRANSFER_FROM, source)
    log.info("%s: the network starts from run %s", spec.name, source)
    return load_model(source, folder)

"""Read what upstream runs logged: the prepared dataset and the oracle."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from omegaconf import DictConfig

from nextday.export import registry
from nextday.models.data import check_segments, segment_counts, without_features
from nextday.models.spec import ModelSpec, model_spec
from nextday.steps.prepare import DATASET_ARTIFACT, DEGENERATE_ARTIFACT, TRUTH_ARTIFACT
from nextday.tracking import MODEL_TAG, STEP_TAG

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    run_id: str
    dataset: pd.DataFrame
    truth: pd.DataFrame | None
    # features prepare found degenerate and dropped (quality.degenerate_features=drop)
    dropped_features: dict[str, str] = field(default_factory=dict)


def load_prepared(run_id: str, folder: Path) -> Prepared:
    """The dataset (and the oracle, on synthetic data) of a prepare run."""
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=DATASET_ARTIFACT, dst_path=str(folder)
    )
    dataset = pd.read_parquet(path)
    client = mlflow.MlflowClient()
    names = {f.path for f in client.list_artifacts(run_id, "oracle")}
    truth = None
    if TRUTH_ARTIFACT in names:
        truth = pd.read_parquet(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=TRUTH_ARTIFACT, dst_path=str(folder)
            )
        )
    dropped: dict[str, str] = {}
    if DEGENERATE_ARTIFACT in {f.path for f in client.list_artifacts(run_id, "dataset")}:
        found = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=DEGENERATE_ARTIFACT, dst_path=str(folder)
                )
            ).read_text()
        )
        dropped = found["features"] if found["policy"] == "drop" else {}
    return Prepared(run_id, dataset, truth, dropped)


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
        [mlflow.active_run().info.experiment_id],
        f"tags.`{STEP_TAG}` = 'export' and tags.`{MODEL_TAG}` = '{name}' "
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
    return f"runs:/{runs[0].info.run_id}/model"

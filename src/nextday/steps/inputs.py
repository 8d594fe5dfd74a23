"""Read what upstream runs logged: the prepared dataset and the oracle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from omegaconf import DictConfig

from nextday.export import registry
from nextday.steps.prepare import DATASET_ARTIFACT, TRUTH_ARTIFACT
from nextday.tracking import MODEL_TAG, STEP_TAG

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    run_id: str
    dataset: pd.DataFrame
    truth: pd.DataFrame | None


def load_prepared(run_id: str, folder: Path) -> Prepared:
    """The dataset (and the oracle, on synthetic data) of a prepare run."""
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=DATASET_ARTIFACT, dst_path=str(folder)
    )
    dataset = pd.read_parquet(path)
    names = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "oracle")}
    truth = None
    if TRUTH_ARTIFACT in names:
        truth = pd.read_parquet(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=TRUTH_ARTIFACT, dst_path=str(folder)
            )
        )
    return Prepared(run_id, dataset, truth)


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

"""Read what upstream runs logged: the prepared dataset and the oracle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from nextday.steps.prepare import DATASET_ARTIFACT, TRUTH_ARTIFACT


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

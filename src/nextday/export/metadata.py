"""metadata.json of an export (`ExportMetadata`): what a version is, where it came from, and
the checksums every copy of it is checked against."""

from __future__ import annotations

import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.config import CONF_DIR
from nextday.contracts import artifacts
from nextday.contracts.metadata import ExportMetadata
from nextday.contracts.outputs import OUTPUTS
from nextday.export.inputs import ExportInputs
from nextday.export.settings import ExportSettings, ServingSettings
from nextday.inference.checks import input_columns
from nextday.inference.model import sha256
from nextday.models.spec import ModelSpec


def git_commit() -> str:
    """The code's commit, with `-dirty` when the working tree has changes."""
    root = CONF_DIR.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def data_summary(dataset: pd.DataFrame) -> dict:
    """The dataset's dates, symbols and rows, whole and per segment."""
    dates = pd.to_datetime(dataset["date"])
    segments = {}
    for segment, rows in dataset.groupby("split"):
        segment_dates = pd.to_datetime(rows["date"])
        segments[str(segment)] = {
            "first_date": str(segment_dates.min().date()),
            "last_date": str(segment_dates.max().date()),
            "rows": len(rows),
        }
    return {
        "first_date": str(dates.min().date()),
        "last_date": str(dates.max().date()),
        "symbols": int(dataset["symbol"].nunique()),
        "rows": len(dataset),
        "segments": segments,
    }


def serving_policy(settings: ServingSettings, spec: ModelSpec, train_x: np.ndarray) -> dict:
    """The serving policy (export.serving) and each feature's range on the training rows
    (`train_x`, their own features), for the out-of-range check of ModelInference."""
    low, high = np.min(train_x, axis=0), np.max(train_x, axis=0)
    return {
        **asdict(settings),
        "ranges": {name: [float(low[i]), float(high[i])] for i, name in enumerate(spec.features)},
    }


def build(
    inputs: ExportInputs,
    registered_model: str,
    version: int,
    files: dict[str, str],
    metrics: dict[str, float],
    settings: ExportSettings,
) -> ExportMetadata:
    """The metadata of `inputs` exported as `version` of `registered_model`, without
    checksums yet (`seal` adds them once the card is written)."""
    spec = inputs.spec
    return ExportMetadata(
        registered_model=registered_model,
        version=version,
        model=spec.name,
        arch=spec.arch,
        features=list(spec.features),
        window=spec.window,
        input_columns=input_columns(spec.features, spec.window),
        outputs=list(OUTPUTS),
        trained_at=inputs.trained_at,
        metrics=dict(metrics),
        processor=inputs.processor,  # the feature processor inside the graphs (clip, scale)
        calibration=inputs.calibration.to_dict(),
        online=inputs.online.to_dict() if inputs.online is not None else {},
        mc={"passes": inputs.calibration.passes, "seed": settings.seed},
        data=data_summary(inputs.dataset),
        hyperparameters=asdict(spec),
        runs=inputs.runs,
        git_commit=git_commit(),
        onnx_opset=settings.opset,
        float16_on_gpu=settings.float16,
        serving=serving_policy(settings.serving, spec, inputs.data.train_flat),
        files=files,
    )


def seal(metadata: ExportMetadata, folder: Path) -> Path:
    """Add the SHA-256 of every file and of the model card; write metadata.json."""
    names = [*metadata.files.values(), artifacts.CARD.name]
    metadata.sha256 = {name: sha256(folder / name) for name in names}
    return metadata.to_json(folder / artifacts.METADATA.name)

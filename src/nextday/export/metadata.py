"""metadata.json and the model card of an export: what a version is, where it came from."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from nextday.config import CONF_DIR
from nextday.inference.model import sha256
from nextday.inference.outputs import OUTPUTS

CARD = "model_card.md"
METRIC_NAMES = ("mae", "rmse", "r2", "dir_acc", "ic", "skill")


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


def build(
    *,
    registered_model: str,
    version: int,
    spec,
    processor: dict,
    calibration: dict,
    files: dict[str, str],
    metrics: dict[str, float],
    data: dict,
    runs: dict[str, str],
    trained_at: str,
    opset: int,
    passes: int,
    seed: int,
    input_columns: list[str],
    float16_on_gpu: bool = False,
    serving: dict | None = None,
) -> dict:
    """The metadata dict, without checksums yet (`seal` adds them once the card is written)."""
    return {
        "registered_model": registered_model,
        "version": version,
        "model": spec.name,
        "arch": spec.arch,
        "features": list(spec.features),
        "window": spec.input_window,
        "input_columns": input_columns,
        "outputs": list(OUTPUTS),
        "trained_at": trained_at,
        "metrics": metrics,
        "processor": processor,  # the feature processor inside the graphs (clip, scale)
        "calibration": calibration,
        "mc": {"passes": passes, "seed": seed},
        "data": data,
        "hyperparameters": asdict(spec),
        "runs": runs,
        "git_commit": git_commit(),
        "onnx_opset": opset,
        "float16_on_gpu": float16_on_gpu,  # ModelInference's default on a CUDA device
        "serving": serving or {},  # row limit, out-of-range policy and training ranges
        "files": files,
    }


def seal(metadata: dict, folder: Path) -> Path:
    """Add the SHA-256 of every ONNX file and of the model card; write metadata.json."""
    names = [*metadata["files"].values(), CARD]
    metadata["sha256"] = {name: sha256(folder / name) for name in names}
    path = folder / "metadata.json"
    path.write_text(json.dumps(metadata, indent=2, default=str))
    return path

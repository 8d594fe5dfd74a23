"""metadata.json: what an exported version is, written by export and read by serving,
backtest, monitor and live.

The nested parts that have their own owners stay plain JSON objects: `processor`
(`FeatureProcessor.to_dict`), `calibration` (`Calibration`), `hyperparameters` (`ModelSpec`),
`serving` (the row limit, out-of-range policy and training ranges) and `data` (the dataset
summary). Older exports without the later fields read with their defaults.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class ExportMetadata:
    registered_model: str
    version: int
    model: str  # normal or earnings
    arch: str
    features: list[str]
    input_columns: list[str]  # the served table's columns (features x window for a sequence)
    outputs: list[str]
    trained_at: str
    metrics: dict[str, float]
    processor: dict[str, Any]
    calibration: dict[str, Any]
    mc: dict[str, int]  # passes, seed
    data: dict[str, Any]
    hyperparameters: dict[str, Any]
    runs: dict[str, str]  # step -> the run that made this version
    git_commit: str
    onnx_opset: int
    files: dict[str, str]  # role (mc, mc_optimized, mc_float16, deterministic, reference) -> file
    window: int = 1
    float16_on_gpu: bool = False  # ModelInference's default on a CUDA device
    serving: dict[str, Any] = field(default_factory=dict)
    # the online calibration served (`uncertainty.online.ServedOnline`); {}: the static one
    online: dict[str, Any] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)  # file -> checksum, set by `seal`

    def to_json(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(asdict(self), indent=2, default=str))
        return Path(path)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExportMetadata:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json(cls, path: Path) -> ExportMetadata:
        return cls.from_dict(json.loads(Path(path).read_text()))

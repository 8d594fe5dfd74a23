"""A standard scaler fitted on the training segment only, stored as plain JSON numbers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Scaler:
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    # the training label's s.d.: the network predicts in these units, then rescales
    label_scale: float

    @classmethod
    def fit(
        cls, features, x: np.ndarray, label: np.ndarray, weight: np.ndarray | None = None
    ) -> Scaler:
        """Fit on training rows (a feature with zero spread gets scale 1: it passes unchanged)."""
        x = np.asarray(x, dtype=np.float64)
        mean = np.average(x, axis=0, weights=weight)
        spread = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=weight))
        scale = np.where(spread > 1e-12, spread, 1.0)
        label_scale = float(np.std(label)) or 1.0
        return cls(tuple(features), tuple(mean.tolist()), tuple(scale.tolist()), label_scale)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (
            (np.asarray(x, dtype=np.float64) - np.array(self.mean)) / np.array(self.scale)
        ).astype(np.float32)

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: Path) -> Scaler:
        data = json.loads(Path(path).read_text())
        return cls(
            tuple(data["features"]),
            tuple(data["mean"]),
            tuple(data["scale"]),
            float(data["label_scale"]),
        )

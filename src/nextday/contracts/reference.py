"""reference.json: what the monitor compares live traffic with, written by export inside the
served model's folder.

Each distribution holds decile edges, the share of reference values in each bin, a sample for
the KS test, and the PSI of every `window_days` window of the reference period (its natural
spread, from which the monitor sets each feature's own PSI limit).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Distribution:
    edges: list[float]
    shares: list[float]
    sample: list[float]
    window_psi: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class DriftReference:
    features: dict[str, Distribution]  # each input feature on the training rows
    prediction: Distribution  # the served prediction on the training and validation rows
    val_mae: float
    val_coverage_80: float
    window_days: int | None = None  # None: an export from before window_psi existed

    def to_json(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(asdict(self)))
        return Path(path)

    @classmethod
    def from_dict(cls, values: dict) -> DriftReference:
        return cls(
            features={name: Distribution(**d) for name, d in values["features"].items()},
            prediction=Distribution(**values["prediction"]),
            val_mae=float(values["val_mae"]),
            val_coverage_80=float(values["val_coverage_80"]),
            window_days=int(values["window_days"]) if "window_days" in values else None,
        )

    @classmethod
    def from_json(cls, path: Path) -> DriftReference:
        return cls.from_dict(json.loads(Path(path).read_text()))

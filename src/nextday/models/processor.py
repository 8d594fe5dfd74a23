"""The feature processor: fitted on the training segment only, applied inside every model.

As Qlib's learn/infer processors, it is fitted once on training rows and then applied
unchanged everywhere else, so leakage is prevented by structure: the network carries it as
its first layers (a clip, then a fixed normalization), every baseline is fitted on its
output, and the ONNX graph rebuilds the same two operations from the network's weights, so
training, baselines, export and serving see one transformation.

1. Winsorize: each feature is clipped to its training quantiles (about `clip_quantile` and
   1 - `clip_quantile`). A few extreme values on real data (a bad tick, a volume spike) no
   longer dominate a linear fit or saturate a unit. Each tail's bound is the quantile among
   the values beyond the median on that side (1 - 2q of the upper half, which is the 1 - q
   quantile of a continuous feature), so that a sparse feature (most rows at one value, e.g.
   an earnings surprise that is 0 on ordinary days) is clipped within its own non-zero
   values instead of being erased at the bulk's value.
2. Scale: robust (median and interquartile range / 1.349, the s.d. of a normal with that
   IQR) or standard (mean and s.d.), computed on the clipped training values. A feature with
   no spread gets scale 1; its centred value is then 0 everywhere.

The label's training s.d. is kept too: the network predicts in those units, then rescales.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nextday.config_schema import CHOICES

SCALINGS = CHOICES["train.processor.scaling"]
# the bound of an unclipped side: finite, so that it survives JSON and float32
UNBOUNDED = float(np.finfo(np.float32).max)
IQR_TO_SD = 1.349


@dataclass(frozen=True)
class FeatureProcessor:
    features: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    label_scale: float
    clip_quantile: float = 0.0
    scaling: str = "standard"

    @classmethod
    def fit(
        cls,
        features,
        x: np.ndarray,
        label: np.ndarray,
        clip_quantile: float = 0.005,
        scaling: str = "robust",
    ) -> FeatureProcessor:
        """Fit on training rows `x` (rows x features) and their labels."""
        if scaling not in SCALINGS:
            raise ValueError(f"train.processor.scaling={scaling!r}: expected one of {SCALINGS}")
        if not 0.0 <= clip_quantile < 0.5:
            raise ValueError(
                f"train.processor.clip_quantile must be in [0, 0.5), got {clip_quantile}"
            )
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(features) or len(x) == 0:
            raise ValueError(
                f"the processor needs a rows x {len(features)} array, got shape {x.shape}"
            )
        lower, upper = np.empty(x.shape[1]), np.empty(x.shape[1])
        for j in range(x.shape[1]):
            lower[j], upper[j] = _bounds(x[:, j], clip_quantile)
        clipped = np.clip(x, lower, upper)
        if scaling == "robust":
            center = np.median(clipped, axis=0)
            q25, q75 = np.quantile(clipped, [0.25, 0.75], axis=0)
            spread = (q75 - q25) / IQR_TO_SD
            # a feature with most rows at one value has IQR 0: fall back to its s.d.
            spread = np.where(spread > 1e-12, spread, clipped.std(axis=0))
        else:
            center, spread = clipped.mean(axis=0), clipped.std(axis=0)
        scale = np.where(spread > 1e-12, spread, 1.0)
        label_scale = float(np.std(label)) or 1.0
        return cls(
            tuple(features),
            tuple(lower.tolist()),
            tuple(upper.tolist()),
            tuple(center.tolist()),
            tuple(scale.tolist()),
            label_scale,
            float(clip_quantile),
            scaling,
        )

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(x, dtype=np.float64), self.lower, self.upper)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """What the network's layers after the processor see (float32)."""
        return ((self.clip(x) - np.array(self.center)) / np.array(self.scale)).astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_dict(cls, data: dict) -> FeatureProcessor:
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)

    @classmethod
    def from_json(cls, path: Path) -> FeatureProcessor:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _bounds(column: np.ndarray, q: float) -> tuple[float, float]:
    """Clip bounds: the same share of each tail, measured among the values beyond the median
    on that side (1 - 2q of the upper half is the 1 - q quantile of a continuous feature)."""
    if q <= 0:
        return -UNBOUNDED, UNBOUNDED
    median = float(np.median(column))
    above, below = column[column > median], column[column < median]
    high = float(np.quantile(above, 1.0 - 2.0 * q)) if above.size else median
    low = float(np.quantile(below, 2.0 * q)) if below.size else median
    return low, high

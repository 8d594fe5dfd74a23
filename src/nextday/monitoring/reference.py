"""The drift reference export puts inside the served model (`DriftReference`,
reference.json): what the monitor compares live traffic with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from nextday.contracts import metrics as metric_names
from nextday.contracts.reference import Distribution, DriftReference
from nextday.monitoring import drift

if TYPE_CHECKING:
    from nextday.models.data import Segment


def distribution(
    values: np.ndarray, dates: np.ndarray, window_days: int, seed: int = 0
) -> Distribution:
    """`values` (one per row, on `dates`) as a reference distribution, with the PSI of every
    `window_days` window of them."""
    ref = drift.reference(values, seed=seed)
    return replace(ref, window_psi=drift.window_psi(ref, values, dates, window_days))


def build_reference(
    spec_features: Sequence[str],
    train_segment: Segment,
    val_segment: Segment,
    outputs: Mapping[str, Mapping[str, np.ndarray]],
    metrics: Mapping[str, float],
    drift_days: int,
) -> DriftReference:
    """Each feature's distribution on the training rows the model serves and the served
    prediction's on the training and validation rows (`outputs[segment]["prediction"]`), the
    PSI of every `drift_days` window of those periods (each one's natural spread: the
    validation period alone is too short to show how far a month of predictions strays on
    the same market), and the validation MAE and coverage (from `metrics`)."""
    train, val = train_segment, val_segment
    return DriftReference(
        features={
            name: distribution(train.flat[:, i], train.dates, drift_days, seed=i)
            for i, name in enumerate(spec_features)
        },
        prediction=distribution(
            np.concatenate([outputs["train"]["prediction"], outputs["val"]["prediction"]]),
            np.concatenate([train.dates, val.dates]),
            drift_days,
        ),
        window_days=drift_days,
        val_mae=metric_names.read(metrics, metric_names.point("val", "mae"), "the export"),
        val_coverage_80=metric_names.read(metrics, metric_names.coverage("val", 0.8), "the export"),
    )

"""Arrange a prepared dataset into what one model trains and is judged on.

Rows are sorted by symbol and date; a sequence model's rows are those with a full window of
the symbol's earlier rows. Training rows and the rows each segment is judged on follow the
model's `train_rows` and `evaluate_rows` (all, normal days, or earnings days).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from nextday.models.spec import ModelSpec
from nextday.models.training import Inputs
from nextday.models.windows import window_index

SEGMENTS = ("train", "val", "test")


@dataclass
class Segment:
    """The rows of one segment that a model is judged on."""

    rows: pd.DataFrame  # symbol, date, label, is_earnings (and true_mean where known)
    x: np.ndarray  # model inputs
    flat: np.ndarray  # the same rows' own features (what the baselines see)

    @property
    def y(self) -> np.ndarray:
        return self.rows["label"].to_numpy(dtype=np.float64)

    @property
    def dates(self) -> np.ndarray:
        return self.rows["date"].to_numpy()


@dataclass
class ModelData:
    train: Inputs  # what the network fits on
    val: Inputs  # what early stopping watches (same rows and weights rule as train)
    train_flat: np.ndarray
    train_dates: np.ndarray  # the dates of the training rows (the baselines' CV folds)
    train_judged: np.ndarray  # which training rows are of the kind the model is judged on
    judged: dict[str, Segment]  # per segment: the rows the model is judged on
    dropped_without_window: int


class DataRequirementError(ValueError):
    """The dataset cannot train or judge this model; raised before any fitting."""


def segment_counts(dataset: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows per segment and row choice (all, normal, earnings): what a model can use."""
    earnings = dataset["is_earnings"].astype(bool)
    counts = {}
    for segment in SEGMENTS:
        in_segment = (dataset["split"] == segment).to_numpy()
        n, e = int(in_segment.sum()), int((in_segment & earnings.to_numpy()).sum())
        counts[segment] = {"all": n, "earnings": e, "normal": n - e}
    return counts


def check_segments(spec: ModelSpec, counts: dict[str, dict[str, int]], min_rows: int) -> None:
    """Fail, naming the numbers and the fix, when a segment has too few rows for `spec`:
    it fits on `train_rows` rows of train (and val, for early stopping) and is judged on
    `evaluate_rows` rows of val and test."""
    needs = [("train", spec.train_rows), ("val", spec.train_rows)]
    needs += [("val", spec.evaluate_rows), ("test", spec.evaluate_rows)]
    short = {
        f"{segment} ({which} rows)": counts[segment][which]
        for segment, which in needs
        if counts[segment][which] < min_rows
    }
    if not short:
        return
    found = ", ".join(f"{name}: {n:,}" for name, n in short.items())
    message = (
        f"model={spec.name} needs at least {min_rows} rows in each segment it fits on and is "
        f"judged on (model.min_segment_rows); this dataset has {found}"
    )
    if "earnings" in (spec.train_rows, spec.evaluate_rows):
        total = sum(counts[segment]["earnings"] for segment in SEGMENTS)
        message += (
            f". It has {total:,} earnings samples in all"
            + (" (no earnings calendar was given)" if total == 0 else "")
            + ": give one with data.earnings_path=<file> (data=csv), or use data=yfinance, "
            "whose download includes the calendar"
        )
    raise DataRequirementError(message)


def without_features(spec: ModelSpec, dropped: dict[str, str]) -> ModelSpec:
    """`spec` without the features prepare found degenerate on this data (and dropped)."""
    kept = tuple(f for f in spec.features if f not in dropped)
    if not kept:
        raise DataRequirementError(
            f"every feature of model={spec.name} is degenerate on this data: {dropped}"
        )
    return replace(spec, features=kept)


def row_filter(frame: pd.DataFrame, which: str) -> np.ndarray:
    if which == "all":
        return np.ones(len(frame), dtype=bool)
    earnings = frame["is_earnings"].to_numpy(dtype=bool)
    return earnings if which == "earnings" else ~earnings


def arrange(spec: ModelSpec, dataset: pd.DataFrame, truth: pd.DataFrame | None = None) -> ModelData:
    """Inputs, labels and weights for `spec` from the prepared dataset (and the oracle)."""
    frame = dataset.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    if truth is not None:
        frame = frame.merge(
            truth[["symbol", "date", "true_mean"]], on=["symbol", "date"], how="left"
        )
    features = frame[list(spec.features)].to_numpy(dtype=np.float32)
    if not np.isfinite(features).all():
        bad = [f for f in spec.features if not np.isfinite(frame[f]).all()]
        raise ValueError(f"the dataset has missing or infinite values in features {bad}")
    if spec.window > 1:
        index, has_window = window_index(frame["symbol"].to_numpy(), spec.window)
    else:
        index, has_window = None, np.ones(len(frame), dtype=bool)
    weight = np.where(frame["is_earnings"].to_numpy(dtype=bool), spec.earnings_weight, 1.0)
    label = frame["label"].to_numpy(dtype=np.float32)
    split = frame["split"].to_numpy()

    def inputs(rows: np.ndarray) -> np.ndarray:
        return features[index[rows]] if index is not None else features[rows]

    def fit_rows(segment: str) -> np.ndarray:
        return np.flatnonzero((split == segment) & row_filter(frame, spec.train_rows) & has_window)

    train_rows, val_rows = fit_rows("train"), fit_rows("val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(
            f"model={spec.name} has no {'training' if len(train_rows) == 0 else 'validation'} "
            f"rows (train_rows={spec.train_rows}): the dataset has "
            f"{int(frame['is_earnings'].sum())} earnings samples"
        )
    judged = {}
    keep = ["symbol", "date", "label", "is_earnings", *(["true_mean"] if truth is not None else [])]
    for segment in SEGMENTS:
        rows = np.flatnonzero(
            (split == segment) & row_filter(frame, spec.evaluate_rows) & has_window
        )
        judged[segment] = Segment(
            rows=frame.loc[rows, keep].reset_index(drop=True), x=inputs(rows), flat=features[rows]
        )
    return ModelData(
        train=Inputs(inputs(train_rows), label[train_rows], weight[train_rows]),
        val=Inputs(inputs(val_rows), label[val_rows], weight[val_rows]),
        train_flat=features[train_rows],
        train_dates=frame["date"].to_numpy()[train_rows],
        train_judged=row_filter(frame, spec.evaluate_rows)[train_rows],
        judged=judged,
        dropped_without_window=int((~has_window).sum()),
    )

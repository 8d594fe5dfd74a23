"""From validated raw data to features, labels and segments: the dataset every model reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nextday.data.schema import RawMarket
from nextday.dataset.split import split_dates
from nextday.features import ALL_FEATURES, TECHNICAL_FEATURES
from nextday.features.earnings import PLACEHOLDER_FEATURES, earnings_features
from nextday.features.panel import Panel
from nextday.features.technical import LONGEST_WINDOW, technical_features

KEY_COLUMNS = ["symbol", "date"]
DATASET_COLUMNS = ["symbol", "date", "split", "is_earnings", "label", *ALL_FEATURES]


@dataclass
class DatasetBuild:
    """What prepare produces from one market.

    `feature_history`: features for every bar past the warm-up, the last bar of each symbol
    included (what a live prediction would use); `dataset`: the rows that have a label, with
    their segment; `truth`: the oracle for the dataset's rows, where the source has one.
    """

    feature_history: pd.DataFrame
    dataset: pd.DataFrame
    truth: pd.DataFrame | None
    nan_share: pd.Series
    counts: dict[str, int] = field(default_factory=dict)
    label_outliers: pd.DataFrame | None = None
    # features that carry nothing on this data's training segment: name -> why
    degenerate: dict[str, str] = field(default_factory=dict)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))


def degenerate_features(train: pd.DataFrame, features: list[str]) -> dict[str, str]:
    """Features constant on the training rows, or identical to an earlier feature there
    (close-only bars make hl_range constant and overnight_gap the same as ret_1d)."""
    values = train[features].to_numpy(dtype=np.float64)
    found: dict[str, str] = {}
    if len(values) == 0:
        return found
    spread = np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
    for j, name in enumerate(features):
        if spread[j] <= 1e-12 * max(1.0, abs(np.nanmax(values[:, j]))):
            found[name] = f"constant ({values[0, j]:.6g}) on the training segment"
    for j, name in enumerate(features):
        if name in found:
            continue
        for i in range(j):
            if features[i] in found:
                continue
            # a cheap look at the first rows rules out almost every pair
            if _same(values[:1000, j], values[:1000, i]) and _same(values[:, j], values[:, i]):
                found[name] = f"identical to {features[i]} on the training segment"
                break
    return found


def compute_features(
    ohlcv: pd.DataFrame, earnings: pd.DataFrame, max_days_since_earnings: int = 126
) -> tuple[pd.DataFrame, pd.Series]:
    """Features and the label for every bar (warm-up included), and each feature's NaN share.

    Returns a frame with symbol, date, is_earnings, label, `position` (the bar's index in its
    symbol's history) and the 37 features; the earnings features are already filled.
    """
    bars = ohlcv.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    bars["ts"] = bars["ts"].astype("datetime64[ns]")
    panel = Panel.from_long(bars["symbol"])
    technical = technical_features(bars, panel)
    earnings_part, is_earnings, earnings_nan = earnings_features(
        bars, earnings, panel.position, max_days_since_earnings
    )
    close = panel.wide(bars["close"])
    label = panel.long(close.shift(-1) / close - 1.0)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "symbol": bars["symbol"].to_numpy(),
                    "date": bars["ts"].to_numpy(),
                    "is_earnings": is_earnings,
                    "label": label,
                    "position": panel.position,
                }
            ),
            technical,
            earnings_part,
        ],
        axis=1,
    )
    return frame, earnings_nan


def build_dataset(
    market: RawMarket,
    warmup_days: int = LONGEST_WINDOW,
    max_days_since_earnings: int = 126,
    label_outlier: float = 0.25,
    split: dict | None = None,
) -> DatasetBuild:
    """Features, labels and chronological segments for `market` (already validated)."""
    if warmup_days < LONGEST_WINDOW:
        raise ValueError(
            f"features.warmup_days={warmup_days} is shorter than the longest feature window "
            f"({LONGEST_WINDOW} days): early rows would hold partial windows"
        )
    split = split or {"train": 0.7, "val": 0.15, "test": 0.15, "embargo_days": 2}
    frame, earnings_nan = compute_features(market.ohlcv, market.earnings, max_days_since_earnings)
    counts = {"bars": len(frame)}
    frame = frame[frame["position"] >= warmup_days]
    counts["warmup_rows_dropped"] = counts["bars"] - len(frame)
    # NaN shares after warm-up: technical ones are then dropped, earnings ones already filled
    nan_share = pd.concat([frame[TECHNICAL_FEATURES].isna().mean(), earnings_nan])
    complete = frame[TECHNICAL_FEATURES].notna().all(axis=1)
    counts["incomplete_rows_dropped"] = int((~complete).sum())
    history = frame[complete].drop(columns="position").reset_index(drop=True)
    if history.empty:
        raise ValueError(
            f"no rows left after the {warmup_days}-day warm-up: every symbol needs more history"
        )

    labelled = history[history["label"].notna()].copy()
    counts["rows_without_next_day"] = len(history) - len(labelled)
    labelled["split"] = split_dates(
        labelled["date"],
        float(split["train"]),
        float(split["val"]),
        float(split["test"]),
        int(split["embargo_days"]),
    )
    counts["embargo_rows_dropped"] = int(labelled["split"].isna().sum())
    dataset = labelled.dropna(subset=["split"])[DATASET_COLUMNS].reset_index(drop=True)
    dataset[ALL_FEATURES] = dataset[ALL_FEATURES].astype(np.float32)
    counts["dataset_rows"] = len(dataset)

    outliers = dataset.loc[dataset["label"].abs() > label_outlier, ["symbol", "date", "label"]]
    truth = None
    if market.truth is not None:
        truth = dataset[KEY_COLUMNS].merge(
            market.truth.rename(columns={"ts": "date"}), on=KEY_COLUMNS, how="left"
        )
    return DatasetBuild(
        feature_history=history.drop(columns="label").rename(columns={"date": "ts"}),
        dataset=dataset,
        truth=truth,
        nan_share=nan_share,
        counts=counts,
        label_outliers=outliers.reset_index(drop=True),
        # placeholders are constant by design (the serving contract keeps their column)
        degenerate=degenerate_features(
            dataset[dataset["split"] == "train"],
            [f for f in ALL_FEATURES if f not in PLACEHOLDER_FEATURES],
        ),
    )

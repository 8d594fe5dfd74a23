"""Chronological splits by calendar date across all symbols, with an embargo between segments."""

from __future__ import annotations

import numpy as np
import pandas as pd

SEGMENTS = ("train", "val", "test")


def split_dates(
    dates: pd.Series, train: float, val: float, test: float, embargo_days: int
) -> pd.Series:
    """Name each row's segment by its date; rows in an embargo get None (and are dropped).

    The unique dates are cut in order into train/val/test by the given fractions, and the first
    `embargo_days` dates of val and of test are left out, so that no label (which reaches one
    trading day ahead) of one segment overlaps the features of the next.
    """
    total = train + val + test
    if min(train, val, test) <= 0 or not np.isclose(total, 1.0):
        raise ValueError(
            f"split fractions must be positive and sum to 1, got train={train}, val={val}, "
            f"test={test} (sum {total:.3f})"
        )
    if embargo_days < 1:
        raise ValueError(
            f"split.embargo_days must be at least 1 (the label horizon), got {embargo_days}"
        )
    unique = np.sort(pd.unique(dates))
    n = len(unique)
    n_train = int(round(n * train))
    n_val = int(round(n * val))
    if n_train < 1 or n_val <= embargo_days or n - n_train - n_val <= embargo_days:
        raise ValueError(
            f"{n} dates are too few for a {train:.0%}/{val:.0%}/{test:.0%} split with an "
            f"embargo of {embargo_days} days"
        )
    segment = np.empty(n, dtype=object)
    segment[:n_train] = "train"
    segment[n_train : n_train + n_val] = "val"
    segment[n_train + n_val :] = "test"
    segment[n_train : n_train + embargo_days] = None
    segment[n_train + n_val : n_train + n_val + embargo_days] = None
    lookup = pd.Series(segment, index=unique)
    return pd.Series(lookup.reindex(dates.to_numpy()).to_numpy(), index=dates.index, dtype=object)


def split_summary(dataset: pd.DataFrame) -> pd.DataFrame:
    """First and last date, rows, symbols and earnings samples of each segment."""
    grouped = dataset.groupby("split", sort=False)
    summary = grouped.agg(
        first_date=("date", "min"),
        last_date=("date", "max"),
        rows=("label", "size"),
        symbols=("symbol", "nunique"),
        earnings_rows=("is_earnings", "sum"),
    )
    return summary.reindex([s for s in SEGMENTS if s in summary.index])

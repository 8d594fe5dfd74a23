"""Chronological splits: ordered, disjoint, with the embargo between segments."""

import pandas as pd
import pytest

from nextday.dataset.split import split_dates


def test_segments_are_ordered_disjoint_and_embargoed():
    days = pd.bdate_range("2020-01-01", periods=300)
    dates = pd.Series(days.repeat(3))  # three symbols a day
    segment = split_dates(dates, 0.7, 0.15, 0.15, embargo_days=2)
    by_date = pd.Series(segment.to_numpy(), index=dates).groupby(level=0).first()
    order = {"train": 0, "val": 1, "test": 2}
    kept = by_date.dropna()
    assert kept.map(order).is_monotonic_increasing
    # every date is in one segment only
    assert (
        pd.Series(segment.to_numpy(), index=dates).groupby(level=0).nunique(dropna=False).max() == 1
    )
    # the embargo: exactly two unused dates before val and before test
    positions = {s: [i for i, d in enumerate(by_date.index) if by_date[d] == s] for s in order}
    assert positions["val"][0] - positions["train"][-1] == 3
    assert positions["test"][0] - positions["val"][-1] == 3
    assert abs(len(positions["train"]) - 210) <= 1


@pytest.mark.parametrize(
    ("fractions", "embargo", "message"),
    [
        ((0.7, 0.2, 0.2), 1, "sum to 1"),
        ((0.7, 0.15, 0.15), 0, "at least 1"),
        ((0.98, 0.01, 0.01), 1, "too few"),
    ],
)
def test_bad_split_config_is_named(fractions, embargo, message):
    dates = pd.Series(pd.bdate_range("2020-01-01", periods=100))
    with pytest.raises(ValueError, match=message):
        split_dates(dates, *fractions, embargo_days=embargo)

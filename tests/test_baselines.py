"""The tree baseline's own binning (models/baselines.py, WeightedBins): the same bins as
scikit-learn's weighted binner, so the tree fitted on them is the tree scikit-learn fits on the
raw features, at a fraction of the cost."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

# scikit-learn's own threshold finder, private: the reference these bins must agree with
from sklearn.ensemble._hist_gradient_boosting.binning import _find_binning_thresholds

from nextday.models.baselines import MAX_BINS, WeightedBins

TREE = dict(max_iter=20, max_leaf_nodes=15, min_samples_leaf=50, early_stopping=False)


def _rows(n: int, seed: int = 0):
    """Heavy-tailed features, a few discrete and a few missing, earnings-like weights."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(n, 6))
    x[:, 1] = rng.integers(0, 5, n)  # fewer distinct values than bins
    x[:, 2] = 7.0  # constant
    x[rng.random(n) < 0.02, 3] = np.nan
    weight = np.where(rng.random(n) < 0.05, 10.0, 1.0)
    y = 0.01 * rng.normal(size=n) + 0.003 * np.nan_to_num(x[:, 0])
    return x, y, weight


@pytest.mark.parametrize("weighted", [True, False])
def test_the_thresholds_are_scikit_learns(weighted):
    x, _, weight = _rows(4000)
    weight = weight if weighted else np.ones(len(x))
    bins = WeightedBins.fit(x, weight)
    for j, thresholds in enumerate(bins.thresholds):
        expected = _find_binning_thresholds(x[:, j].copy(), MAX_BINS, weight.copy())
        np.testing.assert_array_equal(thresholds, expected, err_msg=f"feature {j}")
    assert len(bins.thresholds[2]) == 0  # a constant feature has one bin
    assert len(bins.thresholds[1]) == 4  # five values, four cuts between them


def test_the_tree_on_the_bins_predicts_as_the_tree_on_the_raw_features():
    x, y, weight = _rows(4000)
    unseen, _, _ = _rows(1000, seed=1)
    raw = HistGradientBoostingRegressor(random_state=0, **TREE).fit(x, y, sample_weight=weight)
    bins = WeightedBins.fit(x, weight)
    binned = HistGradientBoostingRegressor(random_state=0, **TREE).fit(
        bins.transform(x), y, sample_weight=weight
    )
    np.testing.assert_array_equal(binned.predict(bins.transform(unseen)), raw.predict(unseen))
    assert np.ptp(raw.predict(unseen)) > 0  # the trees split: the comparison is not of constants


def test_a_missing_value_stays_missing_and_values_beyond_the_range_take_the_end_bins():
    x, _, weight = _rows(2000)
    bins = WeightedBins.fit(x, weight)
    probe = np.array([[np.nan, -1e9, 7.0, np.nan, 0.0, 1e9]])
    binned = bins.transform(probe)[0]
    assert np.isnan(binned[0]) and np.isnan(binned[3])
    assert binned[1] == 0 and binned[5] == len(bins.thresholds[5])

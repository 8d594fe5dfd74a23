"""The built-in market: reproducible, realistic in numbers, with the truth kept apart."""

import numpy as np
import pandas as pd
import pytest

from nextday.config import compose
from nextday.data.synthetic import MarketSpec, generate_market, spec_from_config
from nextday.dataset.build import build_dataset
from nextday.reports.market_facts import check_facts, measure_facts


@pytest.fixture(scope="module")
def default_market():
    """The default data group's market (200 symbols x 5 years, default seed)."""
    return generate_market(spec_from_config(compose([]).data))


def test_same_seed_same_market_and_other_seed_differs():
    a = generate_market(MarketSpec(n_symbols=12, years=1, seed=5))
    b = generate_market(MarketSpec(n_symbols=12, years=1, seed=5))
    c = generate_market(MarketSpec(n_symbols=12, years=1, seed=6))
    pd.testing.assert_frame_equal(a.ohlcv, b.ohlcv)
    pd.testing.assert_frame_equal(a.earnings, b.earnings)
    assert not np.allclose(a.ohlcv["close"].to_numpy(), c.ohlcv["close"].to_numpy())


def test_default_seed_has_the_stylized_facts_of_us_equities(default_market):
    facts = measure_facts(default_market)
    checked = check_facts(facts).set_index("fact")
    failing = checked[checked["holds"] != True]  # noqa: E712 (None means not measured)
    assert failing.empty, f"facts out of range:\n{failing[['value', 'low', 'high']]}"
    # the specific figures the issue names
    assert 0.010 <= facts["normal_day_sd"] <= 0.025
    assert 0.63 <= facts["abs_to_sd"] <= 0.76
    assert 0.02 <= facts["oracle_ic"] <= 0.10
    assert 0.03 <= facts["announcement_abs_move"] <= 0.07
    # volatility clusters: |r| is autocorrelated while r itself is close to uncorrelated
    assert facts["abs_acf_1"] > abs(facts["ret_acf_1"]) + 0.03
    # all three regimes occur
    assert all(facts[f"regime_share_{r}"] > 0.05 for r in ("bull", "bear", "sideways"))


def test_bars_are_consistent_and_labels_are_the_simulated_returns(default_market):
    bars = default_market.ohlcv
    assert (bars[["open", "high", "low", "close"]] > 0).all().all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1) + 1e-9).all()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1) - 1e-9).all()
    earnings = default_market.earnings
    share = len(earnings) / len(bars)
    assert 0.013 <= share <= 0.025
    assert set(earnings["timing"]) == {"amc", "bmo"}


def test_truth_is_kept_out_of_the_features():
    market = generate_market(MarketSpec(n_symbols=20, years=2, seed=1))
    build = build_dataset(market)
    assert not {"true_mean", "true_scale"} & set(build.dataset.columns)
    assert build.truth is not None and len(build.truth) == len(build.dataset)
    assert build.truth["true_mean"].notna().all()
    # the oracle predicts: its rank correlation with the label is positive
    merged = build.dataset[["label"]].join(build.truth[["true_mean"]])
    assert merged.corr(method="spearman").iloc[0, 1] > 0.02


def test_validation_keeps_every_bar_of_the_built_in_market(default_market):
    """Its earnings crashes and fat-tailed days are news, not feed defects."""
    from nextday.config import compose
    from nextday.data.quality import validate

    clean, report = validate(default_market, compose([]).quality)
    assert report.dropped_symbols == [] and report.rows_out == report.rows_in
    found = {kind for kind, n in report.counts().items() if n}
    assert found <= {"extreme_move"}, found

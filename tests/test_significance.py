"""Sharpe ratio significance: bootstrap intervals, PSR and DSR on cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from nextday.backtest.performance import TRADING_DAYS, sharpe_ratio
from nextday.backtest.significance import (
    MIN_DAYS,
    SharpeInterval,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    psr_from_moments,
    sharpe_difference,
    sharpe_interval,
    stationary_indices,
)


def test_interval_covers_the_true_sharpe_about_as_often_as_it_claims():
    # iid normal days with a daily Sharpe of 0.08 (1.27 a year): the 95% interval should cover
    # it in about 95% of replications and be about as wide as Lo's (2002) iid interval
    rng = np.random.default_rng(2024)
    days, daily_sharpe = 250, 0.08
    true = daily_sharpe * np.sqrt(TRADING_DAYS)
    lo_width = 2 * norm.ppf(0.975) * np.sqrt(TRADING_DAYS * (1 + daily_sharpe**2 / 2) / days)
    covered, widths = [], []
    for replication in range(200):
        returns = rng.normal(daily_sharpe * 0.01, 0.01, days)
        found = sharpe_interval(returns, draws=400, seed=replication)
        covered.append(found.low <= true <= found.high)
        widths.append(found.high - found.low)
        assert found.low < found.sharpe < found.high
    assert 0.88 <= np.mean(covered) <= 0.99
    assert np.mean(widths) / lo_width == pytest.approx(1.0, abs=0.12)


def test_interval_point_is_the_sample_sharpe():
    returns = np.random.default_rng(5).normal(0.0005, 0.01, 250)
    found = sharpe_interval(returns, level=0.9)
    assert found.sharpe == pytest.approx(float(sharpe_ratio(returns)))
    assert found.level == 0.9
    wider = sharpe_interval(returns, level=0.99)
    assert wider.low < found.low and wider.high > found.high


def test_a_constant_daily_edge_is_a_significant_difference():
    base = np.random.default_rng(7).normal(0.0, 0.01, 250)
    found = sharpe_difference(base + 0.001, base)
    assert found.low > 0  # the same days for both books: the edge shows in every draw
    alone = sharpe_interval(base)  # what they share cancels: far narrower than one book's
    assert found.high - found.low < 0.2 * (alone.high - alone.low)
    assert found.sharpe == pytest.approx(0.001 / base.std(ddof=1) * np.sqrt(TRADING_DAYS))


def test_identical_books_differ_by_exactly_nothing():
    book = np.random.default_rng(8).normal(0.0005, 0.01, 250)
    assert sharpe_difference(book, book.copy()) == SharpeInterval(0.0, 0.0, 0.0, 0.95)


def test_two_books_of_equal_skill_cannot_be_told_apart():
    rng = np.random.default_rng(9)
    common = rng.normal(0.0005, 0.01, 250)
    found = sharpe_difference(
        common + rng.normal(0, 0.005, 250), common + rng.normal(0, 0.005, 250)
    )
    assert found.low < 0 < found.high


def test_difference_pairs_series_on_their_dates():
    dates = pd.bdate_range("2024-01-01", periods=60)
    rng = np.random.default_rng(10)
    a = pd.Series(rng.normal(0.001, 0.01, 60), index=dates)
    b = pd.Series(rng.normal(0.0, 0.01, 60), index=dates)
    shuffled = b.sample(frac=1.0, random_state=0)  # the same days in another order
    assert sharpe_difference(a, shuffled) == sharpe_difference(a, b)
    b_gap = b.copy()
    b_gap.iloc[3] = np.nan  # a day one book lacks is left out of both
    assert sharpe_difference(a, b_gap) == sharpe_difference(a.drop(dates[3]), b.drop(dates[3]))
    with pytest.raises(ValueError, match="same days"):
        sharpe_difference(a.to_numpy(), b.to_numpy()[:-1])


def test_same_seed_same_interval():
    returns = np.random.default_rng(11).normal(0.0005, 0.01, 250)
    assert sharpe_interval(returns, seed=3) == sharpe_interval(returns, seed=3)
    assert sharpe_interval(returns, seed=3) != sharpe_interval(returns, seed=4)
    assert sharpe_difference(returns, returns[::-1], seed=3) == sharpe_difference(
        returns, returns[::-1], seed=3
    )


def test_nan_days_are_dropped():
    returns = np.random.default_rng(12).normal(0.0005, 0.01, 100)
    gappy = np.insert(returns, [10, 50], np.nan)
    assert sharpe_interval(gappy) == sharpe_interval(returns)
    assert probabilistic_sharpe(gappy) == probabilistic_sharpe(returns)
    assert deflated_sharpe(pd.Series(gappy), 5) == deflated_sharpe(returns, 5)


def test_short_or_flat_records_are_nan_not_nonsense():
    short = np.random.default_rng(13).normal(0.001, 0.01, MIN_DAYS - 1)
    for found in (sharpe_interval(short), sharpe_difference(short, short * 2)):
        assert np.isnan([found.sharpe, found.low, found.high]).all()
    assert np.isnan(probabilistic_sharpe(short))
    assert np.isnan(deflated_sharpe(short, 10))
    flat = np.zeros(100)
    assert np.isnan(sharpe_interval(flat).sharpe)
    assert np.isnan(probabilistic_sharpe(flat))


def test_psr_hand_case():
    # 0.02, -0.01, 0.01, 0 five times: mean 0.005, sample variance 0.0025 / 19, so the daily
    # Sharpe is sqrt(0.19) and SR sqrt(T - 1) = 1.9; skewness 0, kurtosis m4 / m2^2 = 1.64
    returns = np.tile([0.02, -0.01, 0.01, 0.0], 5)
    expected = norm.cdf(1.9 / np.sqrt(1 + (1.64 - 1) / 4 * 0.19))
    assert probabilistic_sharpe(returns) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.96938, abs=1e-5)


def test_psr_with_skewness_and_a_benchmark_matches_the_closed_form():
    returns = np.random.default_rng(14).lognormal(0, 0.5, 300) * 0.01 - 0.011  # skewed
    centred = returns - returns.mean()
    m2, m3, m4 = (np.mean(centred**k) for k in (2, 3, 4))
    sharpe = returns.mean() / returns.std(ddof=1)
    g3, g4 = m3 / m2**1.5, m4 / m2**2
    benchmark = 0.02
    z = (sharpe - benchmark) * np.sqrt(299) / np.sqrt(1 - g3 * sharpe + (g4 - 1) / 4 * sharpe**2)
    assert g3 > 1
    assert probabilistic_sharpe(returns, benchmark) == pytest.approx(norm.cdf(z), rel=1e-12)


def test_deflated_sharpe_paper_example():
    # Bailey & Lopez de Prado (2014), numerical example: 100 trials whose annualized Sharpe
    # ratios vary by 1/2, the best with an annualized Sharpe of 2.5 over five years of daily
    # returns (T = 1250, 250 days a year), skewness -3, kurtosis 10: E[max SR] = 0.1132 a day
    # and DSR = 0.9004
    benchmark = expected_max_sharpe(100, 0.5 / 250)
    assert benchmark == pytest.approx(0.1132, abs=5e-5)
    assert psr_from_moments(2.5 / np.sqrt(250), 1250, -3.0, 10.0, benchmark) == pytest.approx(
        0.9004, abs=5e-5
    )


@pytest.mark.parametrize("trials", [10, 100, 1000])
def test_expected_maximum_matches_simulation(trials):
    simulated = np.random.default_rng(trials).standard_normal((10000, trials)).max(axis=1)
    # the extreme-value approximation is within about 2% from 10 trials on
    assert expected_max_sharpe(trials, 0.25) == pytest.approx(0.5 * simulated.mean(), rel=0.025)


def test_one_trial_deflates_nothing_and_more_trials_deflate_more():
    returns = np.random.default_rng(15).normal(0.0008, 0.01, 250)
    assert deflated_sharpe(returns, 1) == pytest.approx(probabilistic_sharpe(returns))
    found = [deflated_sharpe(returns, n) for n in (1, 2, 10, 100, 1000)]
    assert all(later < earlier for earlier, later in zip(found, found[1:], strict=False))


def test_deflated_sharpe_uses_the_null_estimator_variance_by_default():
    returns = np.random.default_rng(16).normal(0.001, 0.01, 250)
    by_default = deflated_sharpe(returns, 50)
    assert by_default == pytest.approx(deflated_sharpe(returns, 50, 1 / 249))
    given = deflated_sharpe(returns, 50, trial_sharpe_variance=0.01)
    assert given == pytest.approx(
        probabilistic_sharpe(returns, benchmark=expected_max_sharpe(50, 0.01))
    )
    assert given < by_default  # trials that spread more reach a higher best Sharpe by luck


def test_stationary_bootstrap_blocks_have_the_mean_length():
    index = stationary_indices(250, 10, 2000, np.random.default_rng(0))
    assert index.shape == (2000, 250) and index.min() >= 0 and index.max() < 250
    continues = (np.diff(index, axis=1) % 250) == 1
    assert continues.mean() == pytest.approx(0.9, abs=0.01)  # a new block 1 day in 10
    iid = stationary_indices(250, 1, 200, np.random.default_rng(0))
    assert ((np.diff(iid, axis=1) % 250) == 1).mean() == pytest.approx(1 / 250, abs=0.003)


def test_bad_settings_are_named():
    returns = np.zeros(30)
    with pytest.raises(ValueError, match="level"):
        sharpe_interval(returns, level=1.5)
    with pytest.raises(ValueError, match="draws"):
        sharpe_interval(returns, draws=0)
    with pytest.raises(ValueError, match="block_days"):
        sharpe_interval(np.random.default_rng(0).normal(size=30), block_days=0.5)
    with pytest.raises(ValueError, match="trials"):
        deflated_sharpe(returns, 0)

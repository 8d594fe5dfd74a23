"""The performance summary against empyrical-reloaded, the issue's drawdown case and the edges."""

from __future__ import annotations

import empyrical
import numpy as np
import pandas as pd
import pytest

from nextday.backtest.performance import TRADING_DAYS, drawdown, equity, sharpe_ratio, summary


def _series(values) -> pd.Series:
    values = np.asarray(values, dtype=float)
    return pd.Series(values, index=pd.bdate_range("2024-01-01", periods=len(values)))


def _books() -> dict[str, pd.Series]:
    rng = np.random.default_rng(17)
    first_day_loss = rng.normal(0.0008, 0.01, 250)
    first_day_loss[0] = -0.04
    return {
        "normal": _series(rng.normal(0.0005, 0.01, 250)),
        "fat_tailed": _series(0.006 * rng.standard_t(3, 500) + 0.0003),
        "trending_down": _series(rng.normal(-0.002, 0.012, 250)),
        "first_day_loss": _series(first_day_loss),
        "long": _series(rng.normal(0.0002, 0.02, 1500)),
    }


@pytest.mark.parametrize("name", list(_books()))
def test_summary_agrees_with_empyrical(name):
    returns = _books()[name]
    found = summary(returns)
    values = returns.to_numpy()
    expected = {
        "ann_return": empyrical.annual_return(values),
        "ann_vol": empyrical.annual_volatility(values),
        "sharpe": empyrical.sharpe_ratio(values),
        "sortino": empyrical.sortino_ratio(values),
        "max_drawdown": empyrical.max_drawdown(values),
        "calmar": empyrical.calmar_ratio(values),
    }
    for stat, value in expected.items():
        assert found[stat] == pytest.approx(value, rel=1e-9, abs=1e-12), stat
    assert found["max_drawdown"] < 0
    assert found["days"] == len(values)
    assert found["hit_rate"] == pytest.approx(np.mean(values > 0))
    assert np.isnan(found["turnover"])


def test_drawdown_series_agrees_with_empyrical():
    returns = _books()["first_day_loss"]
    assert np.allclose(drawdown(returns), empyrical.stats.drawdown_series(returns), atol=1e-12)
    assert drawdown(returns).iloc[0] == pytest.approx(-0.04)  # a first-day loss is a drawdown


def test_the_issues_case_measures_from_the_starting_capital():
    # -10%, -5%, +2%, +1%: equity 0.9, 0.855, 0.8721, 0.880821 against a peak of 1
    returns = _series([-0.10, -0.05, 0.02, 0.01])
    assert equity(returns).to_numpy() == pytest.approx([0.9, 0.855, 0.8721, 0.880821])
    assert drawdown(returns).to_numpy() == pytest.approx([-0.1, -0.145, -0.1279, -0.119179])
    assert summary(returns)["max_drawdown"] == pytest.approx(-0.145)


def test_a_peak_above_the_capital_is_the_reference():
    # up 10%, then down 10%: 1.1 -> 0.99, a drawdown of -10% from 1.1, not -1% from 1
    assert drawdown(_series([0.10, -0.10])).to_numpy() == pytest.approx([0.0, -0.10])


def test_turnover_hand_case_and_nan_days_left_out():
    returns = _series([0.01, np.nan, -0.02, 0.03])
    found = summary(returns, turnover=_series([2.0, 0.5, 0.5, 1.0]))
    assert found["turnover"] == pytest.approx(1.0)
    kept = summary(returns.dropna())
    assert found["days"] == 3
    for stat in ("ann_return", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar"):
        assert found[stat] == pytest.approx(kept[stat]), stat


def test_empty_series_gives_no_summary():
    assert summary(pd.Series([], dtype=float)) == {}
    assert summary(_series([np.nan, np.nan])) == {}


def test_one_day_leaves_dispersion_statistics_undefined():
    found = summary(_series([-0.02]))
    assert found["days"] == 1
    assert found["max_drawdown"] == pytest.approx(-0.02)
    assert found["ann_return"] == pytest.approx(0.98**TRADING_DAYS - 1)
    for stat in ("ann_vol", "sharpe", "sortino"):
        assert np.isnan(found[stat]), stat
    assert found["calmar"] == pytest.approx(found["ann_return"] / 0.02)


@pytest.mark.parametrize("value", [0.0, 0.001])
def test_flat_returns_give_nan_not_infinity(value):
    found = summary(_series(np.full(50, value)))
    assert found["ann_vol"] == 0.0
    assert found["max_drawdown"] == 0.0
    for stat in ("sharpe", "sortino", "calmar"):  # no dispersion, no downside, no drawdown
        assert np.isnan(found[stat]), stat
    assert found["hit_rate"] == (1.0 if value > 0 else 0.0)
    assert all(not np.isinf(v) for v in found.values())


def test_no_loss_day_leaves_sortino_undefined():
    found = summary(_series([0.01, 0.02, 0.0, 0.005]))
    assert np.isnan(found["sortino"]) and np.isnan(found["calmar"])
    assert np.isfinite(found["sharpe"])


def test_a_wiped_out_book_loses_everything_a_year():
    assert summary(_series([0.05, -1.0, 0.01]))["ann_return"] == -1.0


def test_vectorized_sharpe_matches_one_series_at_a_time():
    rng = np.random.default_rng(3)
    draws = rng.normal(0.001, 0.01, (5, 100))
    draws[2] = 0.003  # a flat row is NaN, not a huge number
    found = sharpe_ratio(draws, axis=1)
    for row, value in zip(draws, found, strict=True):
        expected = empyrical.sharpe_ratio(row)
        assert (np.isnan(value) and not np.isfinite(expected)) or value == pytest.approx(expected)
    assert np.isnan(found[2])
    assert np.isnan(sharpe_ratio(np.array([0.01])))

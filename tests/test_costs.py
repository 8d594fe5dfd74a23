"""The cost model: Corwin-Schultz against the paper's formulas, a planted spread recovered,
trailing estimates that never look ahead, costs against a hand computation, the square-root
scaling with capital, and the documented fallbacks."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from nextday.backtest.costs import (
    CostModel,
    Frictions,
    corwin_schultz,
    daily_costs,
    frictions,
    impact_by_capital,
)
from nextday.data.synthetic import MarketSpec, generate_market

MODEL = CostModel(
    half_spread_bps=None,
    fallback_half_spread_bps=5.0,
    min_half_spread_bps=0.0,
    max_half_spread_bps=1e4,
    spread_days=21,
    adv_days=20,
    vol_days=20,
    impact_coefficient=0.5,
)


def paper_spread(h0, l0, h1, l1, c0):
    """One two-day estimate, written out as Corwin & Schultz (2012) state it (negatives kept)."""
    if l1 > c0:  # the price rose overnight: day 2's range moves down by the gap
        h1, l1 = h1 - (l1 - c0), c0
    elif h1 < c0:  # it fell overnight: day 2's range moves up
        h1, l1 = c0, l1 + (c0 - h1)
    beta = math.log(h0 / l0) ** 2 + math.log(h1 / l1) ** 2
    gamma = math.log(max(h0, h1) / min(l0, l1)) ** 2
    k = 3 - 2 * math.sqrt(2)
    alpha = (math.sqrt(2 * beta) - math.sqrt(beta)) / k - math.sqrt(gamma / k)
    return 2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha))


def wide(values, symbols=("A", "B", "C", "D")) -> pd.DataFrame:
    dates = pd.bdate_range("2024-01-01", periods=len(values))
    return pd.DataFrame(np.asarray(values, float), index=dates, columns=list(symbols))


def test_corwin_schultz_matches_the_papers_formulas_on_a_hand_built_case():
    # A: no gap; B: day 2 opens above day 1's close (gap up); C: below it (gap down);
    # D: a two-day range much wider than each day's (a negative estimate)
    high = wide([[101.0, 50.5, 20.2, 10.5], [101.5, 52.0, 19.5, 11.0], [102.0, 51.0, 19.9, 10.95]])
    low = wide([[99.0, 49.5, 19.8, 10.0], [99.6, 51.2, 19.1, 10.4], [100.0, 50.2, 19.4, 10.6]])
    close = wide([[100.2, 50.3, 19.9, 10.45], [100.9, 51.5, 19.2, 10.9], [101.0, 50.5, 19.7, 10.7]])
    kept = corwin_schultz(high, low, close, negative_to_zero=False)
    zeroed = corwin_schultz(high, low, close)
    assert kept.iloc[0].isna().all()  # the first day has no pair
    for t in (1, 2):
        for s in kept.columns:
            args = (high[s].iloc[t - 1], low[s].iloc[t - 1], high[s].iloc[t], low[s].iloc[t])
            expected = paper_spread(*args, close[s].iloc[t - 1])
            assert kept[s].iloc[t] == pytest.approx(expected, rel=1e-12)
            assert zeroed[s].iloc[t] == pytest.approx(max(expected, 0.0), rel=1e-12, abs=1e-15)
    assert kept["D"].iloc[1] < 0 and zeroed["D"].iloc[1] == 0.0


def test_two_identical_days_give_the_range_over_its_midpoint():
    # beta = 2 x^2, gamma = x^2 with x = ln(H/L) give alpha = x: S = 2 (H - L) / (H + L)
    high, low, close = wide([[102.0] * 4] * 2), wide([[98.0] * 4] * 2), wide([[100.0] * 4] * 2)
    spread = corwin_schultz(high, low, close).iloc[1]
    np.testing.assert_allclose(spread, 2 * 4.0 / 200.0, rtol=1e-12)


def planted_bars(half: float, sigma: float, days=300, symbols=40, steps=200, seed=0):
    """A random-walk mid price sampled `steps` times a day; the high is bought at the ask, the
    low sold at the bid, the close at either (the bid-ask bounce)."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, sigma / np.sqrt(steps), (symbols, days * steps))
    mid = 50.0 * np.exp(np.cumsum(shocks, axis=1)).reshape(symbols, days, steps)
    side = rng.choice([-1.0, 1.0], (symbols, days))
    close = mid[:, :, -1] * (1 + side * half)
    return pd.DataFrame(
        {
            "symbol": np.repeat([f"S{i:02d}" for i in range(symbols)], days),
            "ts": np.tile(pd.bdate_range("2020-01-01", periods=days), symbols),
            "open": close.ravel(),
            "high": (mid.max(axis=2) * (1 + half)).ravel(),
            "low": (mid.min(axis=2) * (1 - half)).ravel(),
            "close": close.ravel(),
            "volume": 1e6,
        }
    )


def test_a_planted_half_spread_is_recovered_by_the_trailing_estimate():
    bars = planted_bars(half=0.002, sigma=0.01)
    estimate = frictions(bars, MODEL).half_spread.iloc[MODEL.spread_days :]
    assert estimate.to_numpy().mean() == pytest.approx(0.002, rel=0.15)
    # every name's own average too (each is a 280-day mean of 21-day means)
    np.testing.assert_allclose(estimate.mean(), 0.002, rtol=0.35)
    # the paper's zeroing of negative two-day estimates would overstate it by a third or more
    wide_bars = {
        c: bars.pivot(index="ts", columns="symbol", values=c) for c in ("high", "low", "close")
    }
    zeroed = corwin_schultz(wide_bars["high"], wide_bars["low"], wide_bars["close"]) / 2
    assert zeroed.stack().mean() > 1.3 * 0.002


def test_the_estimate_is_clipped_and_a_given_half_spread_overrides_it():
    bars = planted_bars(half=0.002, sigma=0.01, days=120, symbols=10)
    clipped = frictions(bars, replace(MODEL, min_half_spread_bps=18.0, max_half_spread_bps=22.0))
    values = clipped.half_spread.iloc[MODEL.spread_days :].to_numpy()
    assert values.min() == pytest.approx(18e-4) and values.max() == pytest.approx(22e-4)
    assert "at the floor 18 bp" in clipped.notes[0]
    given = frictions(bars, replace(MODEL, half_spread_bps=3.0))
    assert (given.half_spread.to_numpy() == 3e-4).all()
    assert "half-spread given: 3 bp for every name" in given.notes


@pytest.fixture(scope="module")
def market_bars() -> pd.DataFrame:
    bars = generate_market(MarketSpec(n_symbols=12, years=0.6, seed=3)).ohlcv
    first = bars["symbol"] == bars["symbol"].iloc[0]
    return bars.assign(volume=bars["volume"].where(~first))  # one name without volume


def test_estimates_use_only_bars_up_to_their_date():
    bars = planted_bars(half=0.002, sigma=0.01, days=150, symbols=10)
    bars.loc[bars["symbol"] == "S00", "volume"] = np.nan  # its ADV is the day's median
    before = frictions(bars, MODEL)
    day = before.adv.index[100]
    changed = bars.copy()
    row = (changed["ts"] == day) & (changed["symbol"] == "S09")
    changed.loc[row, ["high", "low", "close", "volume"]] *= [1.3, 0.8, 1.1, 5.0]
    after = frictions(changed, MODEL)
    for name in ("half_spread", "sigma", "adv"):
        earlier, later = getattr(before, name), getattr(after, name)
        pd.testing.assert_frame_equal(earlier.iloc[:100], later.iloc[:100])
        assert earlier.loc[day, "S09"] != later.loc[day, "S09"]


def test_daily_costs_equal_a_hand_computation():
    dates = pd.bdate_range("2024-01-01", periods=3)

    def frame(a, b):
        return pd.DataFrame({"A": a, "B": b}, index=dates)

    given = Frictions(
        half_spread=frame([5e-4, 5e-4, 6e-4], [1e-3, 1e-3, 1e-3]),
        sigma=frame([0.02, 0.02, 0.03], [0.01, 0.01, 0.01]),
        adv=frame([1e6, 2e6, 2e6], [4e6, 4e6, np.nan]),  # B's ADV unknown on day 3: no impact
        notes=(),
    )
    trades = frame([0.5, 0.1, 0.0], [0.5, 0.0, 0.25])
    out = daily_costs(trades, given, capital=1e6, model=MODEL)
    y = MODEL.impact_coefficient
    spread = [0.5 * 5e-4 + 0.5 * 1e-3, 0.1 * 5e-4, 0.25 * 1e-3]
    impact = [
        0.5 * y * 0.02 * math.sqrt(0.5e6 / 1e6) + 0.5 * y * 0.01 * math.sqrt(0.5e6 / 4e6),
        0.1 * y * 0.02 * math.sqrt(0.1e6 / 2e6),
        0.0,
    ]
    np.testing.assert_allclose(out["spread"], spread, rtol=1e-12)
    np.testing.assert_allclose(out["impact"], impact, rtol=1e-12)
    np.testing.assert_allclose(out["cost"], np.add(spread, impact), rtol=1e-12)
    np.testing.assert_allclose(out["participation"], [0.5, 0.05, 0.0], rtol=1e-12)
    assert list(out.columns) == ["spread", "impact", "cost", "participation"]


def test_impact_grows_with_the_square_root_of_capital_and_the_fast_path_agrees(market_bars):
    traded = frictions(market_bars, MODEL)
    traded = traded.aligned(traded.adv.index[30:], traded.adv.columns)
    rng = np.random.default_rng(1)
    trades = pd.DataFrame(
        np.abs(rng.normal(0, 0.05, traded.adv.shape)) * (rng.random(traded.adv.shape) < 0.4),
        index=traded.adv.index,
        columns=traded.adv.columns,
    )
    capitals = [1e6, 4e6, 1e8, 1e9]
    curve = impact_by_capital(trades, traded, capitals, MODEL)
    small, large = (daily_costs(trades, traded, c, MODEL) for c in (1e6, 4e6))
    np.testing.assert_allclose(large["impact"], 2.0 * small["impact"], rtol=1e-12)
    np.testing.assert_allclose(large["spread"], small["spread"], rtol=1e-12)
    assert (small["impact"] > 0).all()
    for capital in capitals:
        expected = daily_costs(trades, traded, capital, MODEL)["cost"]
        np.testing.assert_allclose(curve[capital], expected, rtol=1e-12)


def test_a_name_without_volume_pays_impact_on_the_days_median_adv(market_bars):
    result = frictions(market_bars, MODEL)
    silent = market_bars["symbol"].iloc[0]
    others = result.adv.drop(columns=silent)
    days = result.adv.index[MODEL.adv_days :]
    # the others' own ADVs are complete here, so the day's median is theirs
    np.testing.assert_allclose(result.adv.loc[days, silent], others.loc[days].median(axis=1))
    assert any("ADV: the day's median" in n and "1 symbols have none at all" in n
               for n in result.notes)  # fmt: skip


def test_close_only_bars_fall_back_to_the_given_spread_and_leave_impact_out(market_bars):
    flat = market_bars.assign(
        open=market_bars["close"], high=market_bars["close"], low=market_bars["close"], volume=0.0
    )
    bare = market_bars[["symbol", "ts", "close"]]  # no high, low or volume column at all
    for bars in (flat, bare):
        result = frictions(bars, MODEL)
        assert (result.half_spread.to_numpy() == 5e-4).all()
        assert result.adv.isna().all().all()
        assert any("no usable high/low" in n and "12 of 12 symbols" in n for n in result.notes)
        assert "no volume in the bars (close-only data): market impact left out" in result.notes
        trades = pd.DataFrame(0.1, index=result.adv.index, columns=result.adv.columns)
        costs = daily_costs(trades, result, 1e8, MODEL)
        assert (costs["impact"] == 0).all() and (costs["participation"] == 0).all()
        np.testing.assert_allclose(costs["spread"], 12 * 0.1 * 5e-4)


def test_missing_high_low_on_some_days_use_the_fallback_only_until_enough_days(market_bars):
    gappy = market_bars.copy()
    early = gappy["ts"] < gappy["ts"].unique()[40]
    gappy.loc[early, ["high", "low"]] = np.nan
    result = frictions(gappy, MODEL)
    assert (result.half_spread.iloc[:40].to_numpy() == 5e-4).all()
    assert (result.half_spread.iloc[-50:].to_numpy() != 5e-4).all()
    assert any("fewer than 10 usable two-day estimates" in n for n in result.notes)


def test_bad_settings_and_unknown_names_are_refused(market_bars):
    with pytest.raises(ValueError, match="min_half_spread_bps=9.0, max_half_spread_bps=2.0"):
        replace(MODEL, min_half_spread_bps=9.0, max_half_spread_bps=2.0)
    with pytest.raises(ValueError, match="vol_days=1"):
        replace(MODEL, vol_days=1)
    result = frictions(market_bars, MODEL)
    with pytest.raises(ValueError, match="1 symbol"):
        result.aligned(result.adv.index, [*result.adv.columns, "ZZZZ"])
    with pytest.raises(ValueError, match="capital"):
        daily_costs(pd.DataFrame(index=result.adv.index), result, 0.0, MODEL)


def test_the_notes_speak_only_of_the_days_traded(market_bars):
    # the first days of the data have no ADV or sigma yet; a backtest that trades later days
    # is not told about them
    everything = frictions(market_bars, MODEL)
    assert any("unknown for every name" in note for note in everything.notes)
    traded = market_bars["ts"].unique()[60:]
    later = frictions(market_bars, MODEL, dates=traded)
    assert not any("unknown for every name" in note for note in later.notes)
    pd.testing.assert_frame_equal(later.adv, everything.adv)  # the estimates are the same

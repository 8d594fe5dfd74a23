"""Features use only what is known at close t; labels are next-day returns from raw closes."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextday.data.schema import EARNINGS_COLUMNS
from nextday.data.synthetic import MarketSpec, generate_market
from nextday.dataset.build import build_dataset, compute_features
from nextday.features import ALL_FEATURES, EARNINGS_FEATURES, TECHNICAL_FEATURES

MARKET = generate_market(MarketSpec(n_symbols=8, years=1.2, seed=11))
BASE, _ = compute_features(MARKET.ohlcv, MARKET.earnings)
DATES = np.sort(MARKET.ohlcv["ts"].unique())


def test_there_are_20_technical_and_17_earnings_features():
    assert len(TECHNICAL_FEATURES) == 20 and len(EARNINGS_FEATURES) == 17
    assert len(set(ALL_FEATURES)) == 37


def _perturb_after(t, symbols, rng):
    """Scramble every bar after t and every report whose session is after t."""
    bars = MARKET.ohlcv.copy()
    later = bars["ts"] > t
    factor = rng.uniform(0.5, 2.0, later.sum())
    for column in ("open", "high", "low", "close"):
        bars.loc[later, column] *= factor
    bars.loc[later, "volume"] *= rng.uniform(0.1, 10.0, later.sum())
    earnings = MARKET.earnings.copy()
    later_reports = earnings["session_date"] > t
    for column in ("eps_actual", "revenue_actual", "gross_margin", "operating_margin"):
        earnings.loc[later_reports, column] *= rng.uniform(-3, 3, later_reports.sum())
    # and add a report right after t for the chosen symbols
    extra = pd.DataFrame(
        {
            "symbol": symbols,
            "ts": pd.Timestamp(t) + pd.Timedelta(days=1, hours=7),
            "session_date": pd.Timestamp(t) + pd.offsets.BDay(1),
            "timing": "amc",
            "eps_estimate": 1.0,
            "eps_actual": 5.0,
            "revenue_estimate": 1e9,
            "revenue_actual": 3e9,
            "gross_margin": 0.9,
            "operating_margin": 0.5,
        }
    )[EARNINGS_COLUMNS]
    return bars, pd.concat([earnings, extra], ignore_index=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day=st.integers(min_value=5, max_value=len(DATES) - 3), seed=st.integers(0, 2**16))
def test_changing_data_after_t_changes_no_feature_at_or_before_t(day, seed):
    t = DATES[day]
    rng = np.random.default_rng(seed)
    symbols = list(rng.choice(MARKET.ohlcv["symbol"].unique(), size=3, replace=False))
    bars, earnings = _perturb_after(t, symbols, rng)
    changed, _ = compute_features(bars, earnings)
    upto = BASE["date"] <= t
    before = BASE.loc[upto, ["symbol", "date", "is_earnings", *ALL_FEATURES]].reset_index(drop=True)
    after = changed.loc[changed["date"] <= t, ["symbol", "date", "is_earnings", *ALL_FEATURES]]
    pd.testing.assert_frame_equal(
        before, after.reset_index(drop=True), check_exact=False, rtol=1e-12
    )


def test_a_feature_that_peeks_would_be_caught():
    """The leakage check itself can fail: a feature shifted one day ahead changes."""
    t = DATES[100]
    bars, earnings = _perturb_after(t, [], np.random.default_rng(0))
    changed, _ = compute_features(bars, earnings)
    peek_base = BASE.groupby("symbol")["ret_1d"].shift(-1)[BASE["date"] == t]
    peek_changed = changed.groupby("symbol")["ret_1d"].shift(-1)[changed["date"] == t]
    assert not np.allclose(peek_base.to_numpy(), peek_changed.to_numpy())


def test_labels_equal_next_day_returns_recomputed_from_raw_closes():
    build = build_dataset(MARKET)
    closes = MARKET.ohlcv.pivot(index="ts", columns="symbol", values="close")
    expected = (closes.shift(-1) / closes - 1.0).stack().rename("expected")
    expected.index.names = ["date", "symbol"]
    joined = build.dataset.set_index(["date", "symbol"])[["label"]].join(expected)
    assert len(joined) == len(build.dataset)
    np.testing.assert_allclose(joined["label"], joined["expected"], rtol=1e-12)
    # the last date of each symbol has no next day: not in the dataset, but in feature_history
    last = MARKET.ohlcv["ts"].max()
    assert (build.dataset["date"] < last).all()
    assert (build.feature_history["ts"] == last).sum() == MARKET.ohlcv["symbol"].nunique()


def test_label_follows_the_symbols_own_next_bar_across_a_gap():
    bars = MARKET.ohlcv[MARKET.ohlcv["symbol"] == MARKET.ohlcv["symbol"].iloc[0]].copy()
    bars = bars.drop(bars.index[120:123])  # three missing days
    frame, _ = compute_features(bars, MARKET.earnings.iloc[:0])
    row = frame.iloc[119]
    assert row["label"] == pytest.approx(bars["close"].iloc[120] / bars["close"].iloc[119] - 1)


def _one_symbol_with_report(timing: str, report_ts: str):
    bars = MARKET.ohlcv[MARKET.ohlcv["symbol"] == MARKET.ohlcv["symbol"].iloc[0]].reset_index(
        drop=True
    )
    from nextday.data.schema import assign_session_dates

    report = pd.DataFrame(
        {
            "symbol": [bars["symbol"].iloc[0]],
            "ts": [pd.Timestamp(report_ts)],
            "timing": [timing],
            "eps_estimate": [1.0],
            "eps_actual": [1.2],
            "revenue_estimate": [1e9],
            "revenue_actual": [1.1e9],
            "gross_margin": [0.5],
            "operating_margin": [0.2],
        }
    )
    report = assign_session_dates(report, bars)[EARNINGS_COLUMNS]
    frame, _ = compute_features(bars, report)
    return frame.set_index("date")


@pytest.mark.parametrize(
    ("timing", "stamp", "sample_day"),
    [("amc", "2019-06-12 16:05", "2019-06-12"), ("bmo", "2019-06-12 07:00", "2019-06-11")],
)
def test_earnings_sample_is_the_close_before_the_report(timing, stamp, sample_day):
    frame = _one_symbol_with_report(timing, stamp)
    samples = frame.index[frame["is_earnings"]]
    assert list(samples) == [pd.Timestamp(sample_day)]
    day = frame.loc[pd.Timestamp(sample_day)]
    assert day["eps_surprise"] == pytest.approx(0.2)
    assert day["days_since_earnings"] == 0
    before = frame.loc[: pd.Timestamp(sample_day) - pd.Timedelta(days=1)]
    assert (before["eps_surprise"] == 0).all()  # not known yet: neutral value
    after = frame.loc[pd.Timestamp(sample_day) + pd.Timedelta(days=1) :]
    assert after["days_since_earnings"].iloc[0] == 1

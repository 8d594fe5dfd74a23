"""Signal analytics (alphalens-style): forward returns by hand, the rank IC against scipy per
date, quantile returns against a pandas groupby, planted signals whose IC, decay, turnover and
group neutrality are known, and the plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nextday.evaluation import signal_plots
from nextday.evaluation.metrics import cross_section_min, daily_ic
from nextday.evaluation.signal_analytics import (
    HORIZONS,
    analyze,
    analyze_many,
    forward_returns,
    newey_west_t,
)


def market(n_symbols=60, n_days=120, n_groups=4, seed=0, sector_vol=0.0) -> pd.DataFrame:
    """iid daily returns (plus a common shock per group and day; none after the last day),
    shuffled rows."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2023-01-02", periods=n_days)
    symbols = [f"S{i:03d}" for i in range(n_symbols)]
    frame = pd.DataFrame(
        {
            "symbol": np.tile(symbols, n_days),
            "date": np.repeat(dates, n_symbols),
            "sector": np.tile([f"G{i % n_groups}" for i in range(n_symbols)], n_days),
        }
    )
    shock = rng.normal(0, sector_vol, (n_days, n_groups))
    group = np.tile(np.arange(n_symbols) % n_groups, n_days)
    day = np.repeat(np.arange(n_days), n_symbols)
    frame["label"] = rng.normal(0, 0.02, len(frame)) + shock[day, group]
    frame.loc[day == n_days - 1, "label"] = np.nan  # the data end: no next close
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def run(frame, signal, groups=None, quantiles=5):
    forward = forward_returns(frame)
    return analyze(signal, frame["symbol"], frame["date"], forward, groups, quantiles)


def test_forward_returns_compound_the_next_labels_per_symbol():
    frame = pd.DataFrame(
        {
            "symbol": ["A"] * 4 + ["B"] * 3,
            "date": pd.to_datetime(
                ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"] * 1
                + ["2024-01-02", "2024-01-03", "2024-01-04"]
            ),
            "label": [0.10, -0.05, 0.02, np.nan, 0.01, 0.03, np.nan],
        }
    )
    shuffled = frame.sample(frac=1.0, random_state=3)
    forward = forward_returns(shuffled, horizons=(1, 2, 3))
    assert forward.index.equals(shuffled.index)
    assert forward["symbol"].equals(shuffled["symbol"])
    by_row = forward.sort_index()
    np.testing.assert_array_equal(by_row["fwd_1"], frame["label"])
    a2 = [1.10 * 0.95 - 1, 0.95 * 1.02 - 1, np.nan, np.nan]
    b2 = [1.01 * 1.03 - 1, np.nan, np.nan]
    np.testing.assert_allclose(by_row["fwd_2"], a2 + b2)
    a3 = [1.10 * 0.95 * 1.02 - 1, np.nan, np.nan, np.nan]
    np.testing.assert_allclose(by_row["fwd_3"], a3 + [np.nan] * 3)
    assert list(forward_returns(frame).columns) == ["symbol", "date"] + [
        f"fwd_{h}" for h in HORIZONS
    ]


def test_a_planted_one_day_signal_has_an_ic_that_decays_with_the_horizon():
    frame = market(n_symbols=80, n_days=150)
    rng = np.random.default_rng(1)
    signal = frame["label"].to_numpy() + rng.normal(0, 0.02, len(frame))
    result = run(frame, signal)
    ic = result.ic["ic"]
    assert ic[1] > ic[2] > ic[5] > ic[10] > 0
    # iid days: corr(x, sum of h returns) = corr(x, r_1) / sqrt(h), for the rank IC nearly so
    for h in (2, 5, 10):
        assert ic[h] == pytest.approx(ic[1] / np.sqrt(h), abs=0.03)
    assert result.ic["linear_ic"][1] == pytest.approx(1 / np.sqrt(2), abs=0.03)
    assert (result.ic["t_stat"] > 3).all()
    # the last h - 1 days have no h-day return
    assert result.ic["days"].to_dict() == {1: 149.0, 2: 148.0, 5: 145.0, 10: 140.0}
    assert result.quantiles["mean"].is_monotonic_increasing
    assert result.spread / result.spread_se > 10


def test_rank_and_linear_ic_match_scipy_per_date():
    frame = market(n_symbols=15, n_days=8, seed=4)
    rng = np.random.default_rng(5)
    signal = np.round(frame["label"].to_numpy() + rng.normal(0, 0.02, len(frame)), 2)  # ties
    signal[rng.random(len(signal)) < 0.1] = np.nan
    with cross_section_min(10):
        result = run(frame, signal)
        forward = forward_returns(frame)
        frame = frame.assign(signal=signal, fwd_2=forward["fwd_2"])
        expected_rank, expected_linear = {}, {}
        for date, day in frame.dropna(subset=["signal", "fwd_2"]).groupby("date"):
            if len(day) >= 10:
                expected_rank[date] = stats.spearmanr(day["signal"], day["fwd_2"]).statistic
                expected_linear[date] = stats.pearsonr(day["signal"], day["fwd_2"]).statistic
        assert result.ic.loc[2, "ic"] == pytest.approx(np.mean(list(expected_rank.values())))
        assert result.ic.loc[2, "linear_ic"] == pytest.approx(
            np.mean(list(expected_linear.values()))
        )
        assert result.ic.loc[2, "days"] == len(expected_rank)
        pairs = frame.dropna(subset=["signal", "label"])
        reference = daily_ic(pairs["signal"], pairs["label"], pairs["date"])
        pd.testing.assert_series_equal(
            result.daily_ic, reference, check_names=False, check_index_type=False
        )
    daily = result.daily_ic.to_numpy()
    assert result.ic.loc[1, "icir"] == pytest.approx(daily.mean() / daily.std(ddof=1))
    # at h = 1 the days do not overlap: the plain t statistic
    assert result.ic.loc[1, "t_stat"] == pytest.approx(
        daily.mean() / (daily.std(ddof=1) / np.sqrt(len(daily)))
    )


def test_quantile_means_and_spread_match_a_groupby():
    frame = market(n_symbols=23, n_days=30, seed=6)
    rng = np.random.default_rng(7)
    signal = rng.normal(size=len(frame))
    with cross_section_min(5):
        result = run(frame, signal, quantiles=4)
    frame = frame.assign(signal=signal)
    # alphalens' quantize_factor: pd.qcut of each day's signal; 23 names give 6, 6, 5, 6
    frame["bucket"] = frame.groupby("date")["signal"].transform(
        lambda day: pd.qcut(day, 4, labels=False) + 1
    )
    assert frame.groupby("date")["bucket"].value_counts().unstack().iloc[0].tolist() == [6, 6, 5, 6]
    daily = frame.dropna(subset=["label"]).groupby(["date", "bucket"])["label"].mean().unstack()
    np.testing.assert_allclose(result.quantiles["mean"], daily.mean())
    np.testing.assert_allclose(result.quantiles["se"], daily.std(ddof=1) / np.sqrt(len(daily)))
    assert result.quantiles["days"].tolist() == [29.0] * 4
    difference = daily[4] - daily[1]
    assert result.spread == pytest.approx(difference.mean())
    assert result.spread_se == pytest.approx(difference.std(ddof=1) / np.sqrt(len(daily)))
    assert set(result.metrics()) >= {"spread_q4_q1", "spread_q4_q1_se"}
    # tied signals: still equal-count buckets, ties broken by symbol order
    tied = np.round(signal)
    with cross_section_min(5):
        result = run(frame, tied, quantiles=4)
    frame = frame.sort_values(["date", "symbol"])
    rank = frame.assign(tied=np.round(frame["signal"])).groupby("date")["tied"].rank("first")
    frame["bucket"] = rank.groupby(frame["date"]).transform(
        lambda day: pd.qcut(day, 4, labels=False) + 1
    )
    daily = frame.dropna(subset=["label"]).groupby(["date", "bucket"])["label"].mean().unstack()
    np.testing.assert_allclose(result.quantiles["mean"], daily.mean())


def test_rank_autocorrelation_is_one_for_a_fixed_ranking_and_near_zero_for_noise():
    frame = market(n_symbols=50, n_days=60, seed=8)
    fixed = frame["symbol"].str[1:].astype(float).to_numpy()  # the same ranking every day
    assert run(frame, fixed).rank_autocorr == pytest.approx(1.0)
    noise = np.random.default_rng(9).normal(size=len(frame))
    assert abs(run(frame, noise).rank_autocorr) < 0.05
    persistent = fixed + np.random.default_rng(10).normal(0, 10, len(frame))
    assert 0.2 < run(frame, persistent).rank_autocorr < 0.95


def test_group_neutral_ic_removes_a_pure_sector_bet_and_keeps_a_within_group_signal():
    frame = market(n_symbols=80, n_days=80, n_groups=4, seed=11, sector_vol=0.02)
    groups = frame["sector"].to_numpy()
    sector_mean = frame.groupby(["date", "sector"])["label"].transform("mean").to_numpy()
    rng = np.random.default_rng(12)
    bet = run(frame, sector_mean + rng.normal(0, 1e-4, len(frame)), groups)
    assert bet.ic.loc[1, "ic"] > 0.4
    assert abs(bet.group_neutral_ic) < 0.03
    assert (bet.groups["ic"].abs() < 0.05).all()
    # exactly the sector's mean: nothing is left to rank within a sector on any day
    assert np.isnan(run(frame, sector_mean, groups).group_neutral_ic)
    within = frame["label"].to_numpy() - sector_mean + rng.normal(0, 0.02, len(frame))
    picker = run(frame, within, groups)
    assert picker.group_neutral_ic > 0.4
    assert picker.group_neutral_ic > picker.ic.loc[1, "ic"] + 0.1
    assert (picker.groups["ic"] > 0.4).all()
    assert picker.groups["days"].tolist() == [79.0] * 4


def test_within_group_ic_matches_scipy_per_date_and_group():
    frame = market(n_symbols=40, n_days=6, n_groups=3, seed=13)
    signal = np.random.default_rng(14).normal(size=len(frame))
    groups = frame["sector"].to_numpy().astype(object)
    groups[:15] = None  # rows without a group leave the group statistics
    with cross_section_min(8):
        result = run(frame, signal, groups)
    frame = frame.assign(signal=signal, group=groups).dropna(subset=["label", "group"])
    for name, rows in frame.groupby("group"):
        daily = [
            stats.spearmanr(day["signal"], day["label"]).statistic
            for _, day in rows.groupby("date")
            if len(day) >= 8
        ]
        assert result.groups.loc[name, "ic"] == pytest.approx(np.mean(daily))
        assert result.groups.loc[name, "days"] == len(daily)


def test_dates_below_min_symbols_are_ignored():
    frame = market(n_symbols=30, n_days=40, seed=15)
    signal = frame["label"].to_numpy() + np.random.default_rng(16).normal(0, 0.02, len(frame))
    thin = pd.DataFrame(
        {
            "symbol": ["S000", "S001", "S002", "S003"],
            "date": pd.Timestamp("2030-01-02"),
            "sector": "G0",
            "label": [0.01, 0.02, 0.03, 0.04],
        }
    )
    wider = pd.concat([frame, thin], ignore_index=True)
    wider_signal = np.concatenate([signal, [0.04, 0.03, 0.02, 0.01]])  # IC -1 that day
    with cross_section_min(5):
        base, extra = run(frame, signal), run(wider, wider_signal)
    pd.testing.assert_frame_equal(base.ic, extra.ic)
    pd.testing.assert_frame_equal(base.quantiles, extra.quantiles)
    assert pd.Timestamp("2030-01-02") not in extra.daily_ic.index
    with cross_section_min(4):
        assert run(wider, wider_signal).daily_ic[pd.Timestamp("2030-01-02")] == -1.0


def test_nan_rows_drop_out_of_their_horizon_only_and_constant_days_give_no_ic():
    frame = market(n_symbols=30, n_days=40, seed=17)
    signal = frame["label"].to_numpy() + np.random.default_rng(18).normal(0, 0.02, len(frame))
    signal[frame["date"] == frame["date"].min()] = 1.0  # constant on the first day: no IC
    signal[:50] = np.nan
    with cross_section_min(5):
        result = run(frame, signal)
        named = analyze_many(
            {"a": signal, "b": -signal},
            frame["symbol"],
            frame["date"],
            forward_returns(frame),
        )
    assert frame["date"].min() not in result.daily_ic.index
    assert result.ic["days"].to_dict() == {1: 38.0, 2: 37.0, 5: 34.0, 10: 29.0}
    assert named["a"].metrics() == result.metrics()
    assert named["b"].ic.loc[1, "ic"] == pytest.approx(-result.ic.loc[1, "ic"])
    months = result.monthly_ic
    assert months.columns.tolist() == list(range(1, 13))
    assert months.loc[2023, 1] == pytest.approx(
        result.daily_ic[result.daily_ic.index.month == 1].mean()
    )
    assert np.isnan(months.loc[2023, 12])


def test_metric_names():
    frame = market(n_symbols=20, n_days=30, seed=19)
    signal = np.random.default_rng(20).normal(size=len(frame))
    ic = [f"ic_h{h}" for h in HORIZONS] + ["icir"] + [f"linear_ic_h{h}" for h in HORIZONS]
    plain = ["spread_q5_q1", "spread_q5_q1_se", "rank_autocorr"]
    assert list(run(frame, signal).metrics()) == ic + plain
    grouped = run(frame, signal, frame["sector"]).metrics()
    assert list(grouped) == [*ic, *plain, "group_neutral_ic"]


def test_newey_west_t_allows_for_overlapping_days():
    # 5-day sums of iid noise overlap like 5-day forward returns: the plain t statistic is
    # about sqrt(5) times too wide, Newey-West with 4 lags nearly corrects it
    rng = np.random.default_rng(21)
    plain, corrected = [], []
    for _ in range(400):
        series = np.convolve(rng.normal(size=304), np.ones(5), mode="valid")
        plain.append(newey_west_t(series, 0))
        corrected.append(newey_west_t(series, 4))
    assert np.std(plain) > 1.9
    assert 0.9 < np.std(corrected) < 1.35


def test_plots_write_pngs(tmp_path):
    frame = market(n_symbols=30, n_days=300, seed=22)
    rng = np.random.default_rng(23)
    signal = frame["label"].to_numpy() + rng.normal(0, 0.03, len(frame))
    model = run(frame, signal, frame["sector"])
    other = run(frame, rng.normal(size=len(frame)))
    paths = [
        signal_plots.ic_decay({"model": model, "noise": other}, tmp_path / "decay.png"),
        signal_plots.quantile_returns(model, tmp_path / "quantiles.png"),
        signal_plots.monthly_ic(model, tmp_path / "monthly.png"),
        signal_plots.group_ic(model, tmp_path / "groups.png"),
    ]
    thin = market(n_symbols=5, n_days=20, seed=24)  # no date with enough names
    empty = run(thin, rng.normal(size=len(thin)), thin["sector"])
    assert np.isnan(empty.ic["ic"]).all() and empty.monthly_ic.empty
    paths += [
        signal_plots.ic_decay({"model": empty}, tmp_path / "empty_decay.png"),
        signal_plots.quantile_returns(empty, tmp_path / "empty_quantiles.png"),
        signal_plots.monthly_ic(empty, tmp_path / "empty_monthly.png"),
        signal_plots.group_ic(empty, tmp_path / "empty_groups.png"),
    ]
    for path in paths:
        assert path.exists() and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="groups"):
        signal_plots.group_ic(other, tmp_path / "none.png")

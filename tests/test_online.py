"""Online conformal calibration: ACI and PID on simulated streams, Mondrian buckets, causality,
the state's contract (order of outcomes, JSON), and the comparison tables."""

import json
from dataclasses import replace
from functools import cache

import numpy as np
import pandas as pd
import pytest

from nextday.config import compose
from nextday.evaluation import intervals
from nextday.uncertainty.online import (
    OnlineSettings,
    OnlineState,
    OutcomeOrderError,
    volatility_edges,
)
from nextday.uncertainty.replay import coverage_by, month, replay, volatility_quintile

Z80 = 1.2815515655446004  # the standard normal's 0.9 quantile
SYMBOLS, DAYS = 200, 240


@cache
def defaults() -> OnlineSettings:
    """The shipped settings (conf/calibrate/default.yaml)."""
    return OnlineSettings.from_config(compose().calibrate.online)


def settings(**changes) -> OnlineSettings:
    return replace(defaults(), **changes)


def stream(scale_after=lambda vol: vol, seed=0, days=DAYS) -> pd.DataFrame:
    """Normal returns of SYMBOLS names, each with its own volatility; the served static
    interval is the exact 80% one for that volatility (calibrated on the first half), and from
    the middle day on the returns' scale becomes scale_after(vol)."""
    rng = np.random.default_rng(seed)
    vol = np.exp(rng.normal(np.log(0.015), 0.4, SYMBOLS))
    dates = pd.bdate_range("2024-01-01", periods=days)
    after = np.repeat(np.arange(days) >= days // 2, SYMBOLS)
    vols = np.tile(vol, days)
    scale = np.where(after, np.tile(scale_after(vol), days), vols)
    return pd.DataFrame(
        {
            "date": np.repeat(dates, SYMBOLS),
            "p10": -Z80 * vols,
            "p50": 0.0,
            "p90": Z80 * vols,
            "actual": scale * rng.normal(size=SYMBOLS * days),
            "vol": vols,
        }
    )


def run(frame, online: OnlineSettings, edges=()):
    return replay(frame, online, OnlineState.start(online, edges))


def rolling_coverage(daily: pd.DataFrame, days: int) -> pd.Series:
    inside = (daily["online_coverage"] * daily["rows"]).rolling(days).sum()
    return inside / daily["rows"].rolling(days).sum()


def test_the_interval_scales_each_half_around_the_median():
    state = replace(OnlineState.start(settings()), multiplier=(1.5,))
    lower, upper = state.interval([-1.0, 0.0], [0.0, 1.0], [2.0, 1.5], vol=[0.01, 0.02])
    # halves 1 and 2 (row 1), 1 and 0.5 (row 2), each times 1.5 around its median
    np.testing.assert_allclose(lower, [-1.5, -0.5])
    np.testing.assert_allclose(upper, [3.0, 1.75])
    static = OnlineState.start(settings()).interval([-1.0], [0.0], [2.0], [0.01])
    np.testing.assert_array_equal(static, [[-1.0], [2.0]])  # m = 1: the static interval


def test_a_day_of_outcomes_moves_each_rule_by_its_formula():
    online = settings(pid_step=0.5, pid_integral_gain=0.5, pid_integral_scale=2.0, half_step_rows=0)
    p10, p50, p90 = np.full(10, -1.0), np.zeros(10), np.ones(10)
    actual = np.r_[np.full(6, 0.5), np.full(4, 3.0)]  # 4 of 10 outside: err = 0.4
    pid = OnlineState.start(online).update("2024-01-02", p10, p50, p90, actual, p50, online)
    integral = 0.5 * np.tanh(0.2 / 2.0)
    assert pid.multiplier[0] == pytest.approx(1 + 0.5 * (0.4 - 0.2) + integral)
    assert pid.error_sum == (pytest.approx(0.2),) and pid.updates == (1,)
    assert pid.through == "2024-01-02"
    aci_settings = replace(online, rule="aci", aci_step=0.05)
    aci = OnlineState.start(aci_settings).update(
        "2024-01-02", p10, p50, p90, actual, p50, aci_settings
    )
    # alpha_t = 0.2 + 0.05 (0.2 - 0.4) = 0.19: m = z(1 - 0.19/2) / z(0.9)
    from scipy import stats

    assert aci.alpha[0] == pytest.approx(0.19)
    assert aci.multiplier[0] == pytest.approx(stats.norm.ppf(1 - 0.095) / Z80)
    # with n0 = 30, the 10 rows' share counts a quarter: err = 0.2 + (0.4 - 0.2) / 4
    damped = replace(online, half_step_rows=30)
    pid = OnlineState.start(damped).update("2024-01-02", p10, p50, p90, actual, p50, damped)
    assert pid.error_sum == (pytest.approx(0.05),)
    assert pid.multiplier[0] == pytest.approx(1 + 0.5 * 0.05 + 0.5 * np.tanh(0.05 / 2.0))


def test_aci_and_pid_recover_coverage_after_the_scale_doubles():
    frame = stream(lambda vol: 2 * vol)
    half = DAYS // 2
    for rule, weeks in (("aci", 6), ("pid", 4)):
        daily = run(frame, settings(rule=rule)).daily
        assert daily["static_coverage"].iloc[half:].mean() < 0.55  # static: far below 0.8
        recovered = rolling_coverage(daily, 10).iloc[half + 5 * weeks :]
        assert recovered.between(0.75, 0.85).all(), (rule, recovered.min(), recovered.max())
        # the two-week coverage before the break held the nominal level too
        assert rolling_coverage(daily, 10).iloc[half - 1] == pytest.approx(0.8, abs=0.03)
        assert daily["multiplier"].iloc[-1] == pytest.approx(2.0, abs=0.15)


def test_on_a_stationary_stream_both_rules_stay_near_the_static_interval():
    frame = stream(seed=1)
    y = frame["actual"].to_numpy()
    static = intervals.interval_score(frame["p10"], frame["p90"], y, 0.8)
    for rule in ("aci", "pid"):
        result = run(frame, settings(rule=rule))
        assert intervals.coverage(result.lower, result.upper, y) == pytest.approx(0.8, abs=0.01)
        multiplier = result.daily["multiplier"]
        assert multiplier.mean() == pytest.approx(1.0, abs=0.02), rule
        assert multiplier.between(0.85, 1.15).all(), rule  # PID's daily noise: s.d. about 0.03
        score = intervals.interval_score(result.lower, result.upper, y, 0.8)
        assert score == pytest.approx(static, rel=0.01)


def test_mondrian_buckets_fix_a_gap_confined_to_the_wild_names():
    frame = stream(lambda vol: np.where(vol > np.quantile(vol, 0.8), 2 * vol, vol), seed=2)
    y, after = (
        frame["actual"].to_numpy(),
        frame["date"] >= frame["date"].iloc[-1] - pd.Timedelta(days=60),
    )
    train = frame["date"] < frame["date"].iloc[len(frame) // 2]
    edges = volatility_edges(frame.loc[train, "vol"], 5)
    wild = (frame["vol"] > edges[-1]).to_numpy() & after.to_numpy()
    calm = (frame["vol"] <= edges[0]).to_numpy() & after.to_numpy()

    def covered(result, rows):
        return intervals.coverage(result.lower[rows], result.upper[rows], y[rows])

    single = run(frame, settings())
    assert covered(single, after.to_numpy()) == pytest.approx(0.8, abs=0.02)  # on average ...
    assert covered(single, wild) < 0.7 and covered(single, calm) > 0.85  # ... in no bucket
    mondrian = run(frame, settings(buckets=5), edges)
    assert covered(mondrian, wild) == pytest.approx(0.8, abs=0.03)
    assert covered(mondrian, calm) == pytest.approx(0.8, abs=0.03)
    assert mondrian.state.multiplier[-1] == pytest.approx(2.0, abs=0.2)
    assert all(m == pytest.approx(1.0, abs=0.15) for m in mondrian.state.multiplier[:-1])


def test_a_days_interval_depends_on_earlier_days_only():
    frame = stream(lambda vol: 1.5 * vol, seed=3, days=60)
    online = settings(buckets=5)
    edges = volatility_edges(frame["vol"], 5)
    base = run(frame, online, edges)
    day = frame["date"].unique()[40]
    changed = frame.copy()
    changed.loc[changed["date"] >= day, "actual"] *= 10  # day 40's and later outcomes
    other = run(changed, online, edges)
    before = (frame["date"] <= day).to_numpy()  # day 40 itself is served before its outcomes
    np.testing.assert_array_equal(base.lower[before], other.lower[before])
    np.testing.assert_array_equal(base.upper[before], other.upper[before])
    assert not np.allclose(base.upper[~before], other.upper[~before])

    # replay is the served state applied, then updated, day by day (rows in any order)
    state = OnlineState.start(online, edges)
    shuffled = frame.sample(frac=1.0, random_state=0)
    again = replay(shuffled, online, state)
    np.testing.assert_array_equal(again.lower, base.lower[shuffled.index])
    for date, rows in frame.groupby("date"):
        lower, _ = state.interval(rows["p10"], rows["p50"], rows["p90"], rows["vol"])
        np.testing.assert_array_equal(lower, base.lower[rows.index])
        state = state.update(
            date, *(rows[c] for c in ("p10", "p50", "p90", "actual", "vol")), online
        )
    assert state == base.state


def test_an_outcome_is_used_once_and_in_order():
    online = settings()
    one = np.ones(3)
    state = OnlineState.start(online).update("2024-03-05", -one, 0 * one, one, one, one, online)
    for date in ("2024-03-05", "2024-03-04"):
        with pytest.raises(OutcomeOrderError, match="updated through 2024-03-05"):
            state.update(date, -one, 0 * one, one, one, one, online)
    assert state.update(
        pd.Timestamp("2024-03-06"), -one, 0 * one, one, one, one, online
    ).through == ("2024-03-06")
    # a day whose outcomes are not known yet uses nothing and changes nothing
    assert state.update("2024-03-06", -one, 0 * one, one, np.full(3, np.nan), one, online) is state
    with pytest.raises(ValueError, match="start a new state"):
        state.update("2024-03-07", -one, 0 * one, one, one, one, replace(online, rule="aci"))


def test_buckets_without_rows_that_day_keep_their_state():
    online = settings(buckets=3)
    state = OnlineState.start(online, (0.01, 0.02))
    np.testing.assert_array_equal(state.bucket([0.005, 0.01, 0.015, 0.03, np.nan]), [0, 1, 1, 2, 2])
    # two calm rows, both outside: only bucket 0 moves
    state = state.update("2024-01-02", [-1, -1], [0, 0], [1, 1], [5, 5], [0.001, 0.002], online)
    assert state.updates == (1, 0, 0)
    assert state.multiplier[0] > 1.0 and state.multiplier[1:] == (1.0, 1.0)
    np.testing.assert_array_equal(state.multiplier_for([0.001, 0.05]), [state.multiplier[0], 1.0])


def test_a_row_without_a_prediction_is_no_miss():
    online = settings()
    state = OnlineState.start(online)
    # two rows inside, one row with no interval (a missing prediction): coverage is 2 of 2
    nan = float("nan")
    after = state.update(
        "2024-01-02", [-1, -1, nan], [0, 0, nan], [1, 1, nan], [0, 0, 5], [0.01] * 3, online
    )
    both_inside = state.update("2024-01-02", [-1, -1], [0, 0], [1, 1], [0, 0], [0.01] * 2, online)
    assert after.multiplier == both_inside.multiplier and after.multiplier[0] < 1.0
    frame = stream(seed=5, days=10)
    frame.loc[frame["date"] == frame["date"].iloc[0], ["p10", "p50", "p90"]] = nan
    replayed = replay(frame, online, OnlineState.start(online))
    assert replayed.daily["rows"].iloc[0] == 0  # the day without predictions judged nothing
    assert replayed.state.multiplier[0] < 1.5


def test_the_state_round_trips_through_json():
    frame = stream(lambda vol: 1.5 * vol, seed=4, days=30)
    online = settings(buckets=5)
    state = run(frame, online, volatility_edges(frame["vol"], 5)).state
    assert state.through == "2024-02-09" and sum(state.updates) == 5 * 30
    assert OnlineState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_settings_are_checked_at_the_boundary():
    with pytest.raises(ValueError, match="rule 'kalman' is not one of") as error:
        settings(rule="kalman", min_multiplier=1.5)
    assert "must hold 1" in str(error.value)
    with pytest.raises(ValueError, match="need 4 inner edges, got 0"):
        OnlineState.start(settings(buckets=5))


def test_coverage_by_puts_the_methods_side_by_side():
    frame = pd.DataFrame(
        {
            "group": ["a", "a", "b", "b"],
            "actual": [0.0, 2.0, 0.0, -3.0],
            "static_lower": [-1.0] * 4,
            "static_upper": [1.0] * 4,
            "pid_lower": [-2.0] * 4,
            "pid_upper": [2.0] * 4,
        }
    )
    table = coverage_by(frame, "group", 0.8, methods=("static", "pid"))
    assert list(table.index) == ["a", "b"] and list(table["rows"]) == [2, 2]
    assert list(table["static_coverage"]) == [0.5, 0.5] and list(table["pid_coverage"]) == [1, 0.5]
    a = frame[frame["group"] == "a"]
    assert table.loc["a", "static_interval_score"] == intervals.interval_score(
        a["static_lower"], a["static_upper"], a["actual"], 0.8
    )
    assert table.loc["b", "pid_width"] == 4.0
    with pytest.raises(ValueError, match="aci_lower"):
        coverage_by(frame, "group", 0.8)
    ties = volatility_quintile(np.r_[np.zeros(50), np.arange(50.0)])
    assert pd.Series(ties).value_counts().to_dict() == dict.fromkeys(
        ["1 calm", "2", "3", "4", "5 wild"], 20
    )
    assert list(month(pd.to_datetime(["2024-01-31", "2024-02-01"]))) == ["2024-01", "2024-02"]

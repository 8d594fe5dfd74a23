"""A simulated live period: the built-in market continued past the training data, with a
regime change, served and logged; the monitor stays quiet before the change and raises
accuracy, calibration and drift alerts after it."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from nextday.contracts import tags
from nextday.data.continued import continue_market
from nextday.data.schema import RawMarket
from nextday.data.store import Store
from nextday.data.synthetic import MarketSpec, RegimeChange, generate_market

SPEC = MarketSpec(n_symbols=12, years=1)


def _returns(ohlcv: pd.DataFrame) -> pd.Series:
    bars = ohlcv.sort_values(["symbol", "ts"])
    return bars.groupby("symbol")["close"].pct_change()


def test_a_regime_change_leaves_the_path_before_it_alone():
    plain = generate_market(SPEC)
    changed = generate_market(
        MarketSpec(n_symbols=12, years=1, change=RegimeChange(day=150, vol_scale=3.0))
    )
    before = plain.ohlcv["ts"] < plain.regimes["ts"][150]
    # (high and low are scaled by each symbol's typical move over the whole path)
    columns = ["symbol", "ts", "open", "close", "volume"]
    pd.testing.assert_frame_equal(
        plain.ohlcv.loc[before, columns], changed.ohlcv.loc[before, columns]
    )
    assert (changed.regimes["regime"][150:] == "bear").all()
    after = ~before
    ratio = _returns(changed.ohlcv)[after].std() / _returns(plain.ohlcv)[after].std()
    assert ratio > 2.0, ratio
    with pytest.raises(ValueError, match="regime must be one of"):
        RegimeChange(day=3, regime="crash")


def test_the_continued_market_carries_on_from_the_history():
    history = generate_market(SPEC)
    last = history.ohlcv["ts"].max()
    live = continue_market(SPEC, history, days=40)
    assert set(live.ohlcv["symbol"]) == set(history.ohlcv["symbol"])
    dates = np.sort(live.ohlcv["ts"].unique())
    assert len(dates) == 40 and pd.Timestamp(dates[0]) == pd.bdate_range(last, periods=2)[1]
    # the first live return is an ordinary day's move from the last stored close
    joined = pd.concat([history.ohlcv[history.ohlcv["ts"] == last], live.ohlcv], ignore_index=True)
    first = _returns(joined)[joined["ts"] == dates[0]]
    assert first.abs().max() < 0.25, first.abs().max()
    # and the live stretch is neither calmer nor wilder than the history (no seam)
    ratio = _returns(live.ohlcv).std() / _returns(history.ohlcv).std()
    assert 0.6 < ratio < 1.6, ratio
    volume = live.ohlcv["volume"].mean() / history.ohlcv["volume"].mean()
    assert 0.6 < volume < 1.6, volume
    assert (pd.to_datetime(live.earnings["session_date"]) > last).all()
    # a fixed config gives the same period; the change counts live days
    again = continue_market(SPEC, history, days=40)
    pd.testing.assert_frame_equal(live.ohlcv, again.ohlcv)
    crash = continue_market(SPEC, history, days=40, change=RegimeChange(day=20))
    assert list(crash.regimes["regime"][20:].unique()) == ["bear"]
    early = live.ohlcv["ts"] < dates[20]
    pd.testing.assert_frame_equal(
        crash.ohlcv.loc[early, ["symbol", "ts", "close"]],
        live.ohlcv.loc[early, ["symbol", "ts", "close"]],
    )


def test_continuing_refuses_a_history_of_other_symbols():
    history = generate_market(SPEC)
    first = history.ohlcv["symbol"].iloc[0]
    other = RawMarket(
        ohlcv=history.ohlcv.assign(symbol=history.ohlcv["symbol"].replace(first, "ZZZZ")),
        earnings=history.earnings,
        source="synthetic",
    )
    with pytest.raises(ValueError, match=r"symbols \['ZZZZ'\] that this market does not draw"):
        continue_market(SPEC, other, days=10)
    # a symbol prepare's checks dropped is not continued: the others are
    kept = RawMarket(
        ohlcv=history.ohlcv[history.ohlcv["symbol"] != first],
        earnings=history.earnings,
        source="synthetic",
    )
    continued = continue_market(SPEC, kept, days=10)
    assert set(continued.ohlcv["symbol"]) == set(kept.ohlcv["symbol"])
    assert first not in set(continued.earnings["symbol"])


@pytest.fixture(scope="module")
def served(quick_chain):
    """The quick pipeline for the normal model (a copy of the session's), then 60 live days
    with a crash (bear, twice the volatility) from live day 30, every prediction logged."""
    from nextday.steps.live import run_live

    with quick_chain.open("exported", copy=True) as (_, cfg):
        live_run = mlflow.get_run(
            run_live(cfg("live.days=60", "live.change.after_days=30", "live.change.vol_scale=2"))
        )
        yield cfg, live_run


def test_live_logs_every_served_prediction(served):
    cfg, run = served
    store = Store(str(cfg().store.url))
    first = pd.Timestamp(run.data.tags[tags.LIVE_FIRST_DATE])
    logged = store.read("model_predictions", "ts >= :first", {"first": first.date()})
    bars = store.read("ohlcv", "source = 'synthetic-live'")
    features = store.read("feature_history", "ts >= :first", {"first": first.date()})
    assert bars["ts"].nunique() == 60 and logged["ts"].nunique() == 60
    # the normal model serves the ordinary days: every live row without an earnings report
    served_rows = features[~features["is_earnings"].astype(bool)]
    assert len(logged) == len(served_rows) == run.data.metrics["live_predictions"]
    assert logged[["predicted", "p10", "p90", "latency_ms"]].notna().all().all()
    assert (logged["p10"] <= logged["p90"]).all()
    assert run.data.tags[tags.LIVE_CHANGE].startswith("bear x2.0 volatility from")


def test_monitor_is_quiet_before_the_change_and_alerts_after_it(served):
    from nextday.steps.monitor import run_monitor

    cfg, run = served
    change = pd.Timestamp(run.data.tags[tags.LIVE_CHANGE].rsplit(" ", 1)[-1])
    quiet = mlflow.get_run(run_monitor(cfg(f"monitor.as_of={change.date()}")))
    report = mlflow.artifacts.load_dict(f"runs:/{quiet.info.run_id}/monitor/alerts.json")
    assert report == {"alerts": [], "recommendation": None}, report
    assert quiet.data.tags[tags.MONITOR_ALERTS] == "none"

    loud = mlflow.get_run(run_monitor(cfg()))
    report = mlflow.artifacts.load_dict(f"runs:/{loud.info.run_id}/monitor/alerts.json")
    kinds = {a["kind"] for a in report["alerts"]}
    assert {"accuracy", "feature drift"} <= kinds, kinds
    drifted = {a["message"].split(":")[0] for a in report["alerts"] if a["kind"] == "feature drift"}
    assert {"vol_20d", "atr_14_pct"} <= drifted, drifted
    assert report["recommendation"].startswith("retrain")
    assert loud.data.metrics["monitor_rolling_mae"] > 1.5 * loud.data.metrics["monitor_val_mae"]
    # the served interval (online PID, widened through the crash) beside the static one
    static, online = (loud.data.metrics[f"{m}_coverage_80"] for m in ("static", "online"))
    assert static < online and loud.data.metrics["online_multiplier"] > 1.0, (static, online)
    assert loud.data.metrics["online_width_80"] > loud.data.metrics["static_width_80"]
    # the actuals of live days come from the live bars
    store = Store(str(cfg().store.url))
    logged = store.read(
        "model_predictions", "actual is not null and ts >= :c", {"c": change.date()}
    )
    bars = store.read("ohlcv", "source = 'synthetic-live'").sort_values(["symbol", "ts"])
    bars["next"] = bars.groupby("symbol")["close"].shift(-1) / bars["close"] - 1
    joined = logged.merge(bars[["symbol", "ts", "next"]], on=["symbol", "ts"])
    assert len(joined) == len(logged) > 0
    np.testing.assert_allclose(joined["actual"], joined["next"], rtol=1e-9)


def test_the_served_interval_is_the_online_rule_fed_each_day_before(served):
    """Between the live days the daily monitor's update runs: what was served on each day is
    the version's rule replayed from the static calibration over the days before it only."""
    from nextday.inference.model import ModelInference
    from nextday.uncertainty.replay import REPLAY_COLUMNS, replay
    from nextday.uncertainty.stored_state import read_state, static_interval

    cfg, run = served
    store = Store(str(cfg().store.url))
    model = ModelInference(run.data.tags[tags.LIVE_MODEL])
    assert model.online is not None and model.online.settings.rule == "pid"
    first = pd.Timestamp(run.data.tags[tags.LIVE_FIRST_DATE])
    logged = store.read("model_predictions", "ts >= :first", {"first": first.date()})
    logged = logged.sort_values(["ts", "symbol"]).reset_index(drop=True)
    static = static_interval(logged)
    frame = static.assign(date=pd.to_datetime(logged["ts"]), actual=logged["actual"], vol=np.nan)
    replayed = replay(frame[list(REPLAY_COLUMNS)], model.online.settings, model.online.start())
    np.testing.assert_allclose(logged["online_multiplier"], replayed.multiplier, rtol=1e-9)
    np.testing.assert_allclose(logged["p10"], replayed.lower, rtol=1e-9)
    np.testing.assert_allclose(logged["p90"], replayed.upper, rtol=1e-9)
    # the first live day is served with the static interval, later ones move with the outcomes
    first_day = logged["ts"] == logged["ts"].min()
    assert (logged.loc[first_day, "online_multiplier"] == 1.0).all()
    assert logged["online_multiplier"].nunique() > 30
    # the stored state used every day but the last (its outcome needs a bar not yet there)
    state = read_state(store, model.name, model.version)
    assert state.through == sorted(logged["ts"].unique())[-2].date().isoformat()


def test_after_the_crash_the_online_interval_covers_better_than_the_static_one(served):
    _, run = served
    metrics = run.data.metrics
    for method in ("static", "online"):
        for part in ("before", "after", "window"):
            assert 0.0 <= metrics[f"live_{method}_coverage_80_{part}"] <= 1.0
    static, online = (metrics[f"live_{m}_coverage_80_after"] for m in ("static", "online"))
    assert static < 0.75, static  # twice the volatility: the static interval under-covers
    assert abs(online - 0.8) < abs(static - 0.8), (static, online)
    assert metrics["live_online_width_80_after"] > metrics["live_static_width_80_after"]


def test_a_rerun_without_the_change_is_judged_on_its_own_outcomes(served):
    """Running live again rewrites the bars and the predictions of the same days: the actuals
    of the crash are not reused, and the quiet period's intervals stay near 80%."""
    from nextday.steps.live import run_live

    cfg, _ = served
    quiet = mlflow.get_run(run_live(cfg("live.days=60", "live.change.after_days=null")))
    metrics = quiet.data.metrics
    assert "live_static_coverage_80_after" not in metrics  # no change: all of it is "before"
    for method in ("static", "online"):
        assert 0.7 <= metrics[f"live_{method}_coverage_80_before"] <= 0.9, metrics
    store = Store(str(cfg().store.url))
    first = pd.Timestamp(quiet.data.tags[tags.LIVE_FIRST_DATE])
    logged = store.read("model_predictions", "actual is not null and ts >= :f", {"f": first.date()})
    bars = store.read("ohlcv", "source = 'synthetic-live'").sort_values(["symbol", "ts"])
    bars["next"] = bars.groupby("symbol")["close"].shift(-1) / bars["close"] - 1
    joined = logged.merge(bars[["symbol", "ts", "next"]], on=["symbol", "ts"])
    assert len(joined) == len(logged) > 0
    np.testing.assert_allclose(joined["actual"], joined["next"], rtol=1e-9)

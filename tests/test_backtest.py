"""backtest: the strategy against a hand computation, the leak guard against a planted leak,
refit folds that never see their future, and the report on the quick preset."""

from __future__ import annotations

import dataclasses
import io

import mlflow
import numpy as np
import pandas as pd
import pytest

from nextday.backtest import breakdowns, guard, performance, strategy, walkforward
from nextday.backtest.breakdowns import market_regimes, surprise_buckets
from nextday.backtest.costs import CostModel, Frictions
from nextday.backtest.judge import Market, judge
from nextday.backtest.metrics import coverage_name
from nextday.backtest.settings import BacktestSettings
from nextday.config import compose
from nextday.contracts import artifacts, tags
from nextday.contracts.outputs import INTERVALS, SERVED_LEVELS
from nextday.data.store import Store
from nextday.evaluation.intervals import coverage, interval_metrics, level_tag
from nextday.evaluation.metrics import direction_accuracy, point_metrics
from nextday.evaluation.signal_analytics import forward_returns
from nextday.steps.backtest import run_backtest
from nextday.steps.inputs import load_prepared
from nextday.uncertainty.online import ServedOnline

FLAT_COSTS = CostModel(
    half_spread_bps=10.0, fallback_half_spread_bps=10.0, min_half_spread_bps=0.0,
    max_half_spread_bps=100.0, spread_days=5, adv_days=5, vol_days=5, impact_coefficient=0.0,
)  # fmt: skip


def _flat_frictions(index, columns, half_spread=10e-4) -> Frictions:
    frame = pd.DataFrame(half_spread, index=index, columns=columns)
    return Frictions(frame, frame * 0 + 0.02, frame * 0 + 1e9, ())


def test_long_short_returns_match_a_hand_computation():
    # two days, four names, quantile 0.25 rebuilt daily: one long (highest), one short (lowest)
    signal = pd.DataFrame(
        [[0.3, 0.1, -0.2, 0.0], [-0.5, 0.2, 0.4, 0.1]],
        index=pd.to_datetime(["2024-01-02", "2024-01-03"]), columns=list("ABCD"),
    )  # fmt: skip
    realized = signal * 0 + np.array([[0.02, 0.01, -0.03, 0.00], [0.01, -0.02, 0.05, 0.00]])
    long, short = strategy.legs(signal, strategy.TradingRule(0.25, 0.25, 1))
    weights = strategy.leg_weights(long, short)
    frictions = _flat_frictions(signal.index, signal.columns)
    daily = strategy.book(weights, realized, frictions, 1e6, FLAT_COSTS)
    # day 1: long A (+0.02), short C (-(-0.03)); the first book trades |1| + |-1| = 2
    assert daily["gross"].iloc[0] == pytest.approx(0.02 + 0.03)
    assert daily["turnover"].iloc[0] == pytest.approx(2.0)
    assert daily["net"].iloc[0] == pytest.approx(0.05 - 2 * 10e-4)
    # day 2: long C (+0.05), short A (-0.01): A goes +1 -> -1, C -1 -> +1: turnover 4
    assert daily["gross"].iloc[1] == pytest.approx(0.05 - 0.01)
    assert daily["turnover"].iloc[1] == pytest.approx(4.0)
    assert daily["net"].iloc[1] == pytest.approx(0.04 - 4 * 10e-4)
    summary = performance.summary(daily["net"], daily["turnover"])
    assert summary["hit_rate"] == 1.0 and summary["max_drawdown"] == 0.0
    assert summary["turnover"] == pytest.approx(3.0)


def test_the_holding_band_keeps_a_name_until_it_leaves_the_exit_quantile():
    # ten names; name 0 starts on top and slides down one rank a day
    days, names = 6, 10
    values = np.tile(np.arange(names, 0, -1, dtype=float), (days, 1))
    for t in range(days):
        values[t, 0] = names - 0.5 - t  # ranks 1, 2, 3, 4, 5, 6 of 10
    signal = pd.DataFrame(values, columns=[f"S{i}" for i in range(names)])
    banded, _ = strategy.legs(signal, strategy.TradingRule(0.2, 0.4, 1))
    rebuilt, _ = strategy.legs(signal, strategy.TradingRule(0.2, 0.2, 1))
    assert banded.sum(axis=1).tolist() == [2] * days  # k = 2 names a leg every day
    # rebuilt daily, S0 leaves once two names rank above it; banded, once it falls out of
    # the top 4 (40%)
    assert rebuilt[:, 0].tolist() == [True, True, False, False, False, False]
    assert banded[:, 0].tolist() == [True, True, True, True, False, False]
    turnover = {
        name: np.abs(np.diff(strategy.leg_weights(legs, legs * False), axis=0)).sum()
        for name, legs in (("banded", banded), ("rebuilt", rebuilt))
    }
    assert turnover["banded"] <= turnover["rebuilt"]
    # revised every third day: the legs stand still in between
    slow, _ = strategy.legs(signal, strategy.TradingRule(0.2, 0.2, 3))
    assert (slow[1] == slow[0]).all() and (slow[2] == slow[0]).all()
    with pytest.raises(ValueError, match="exit_quantile"):
        strategy.TradingRule(0.2, 0.1, 1)


def test_interval_sizing_puts_more_on_confident_names_of_the_same_legs():
    index = pd.to_datetime(["2024-01-02"])
    prediction = pd.DataFrame([[0.02, 0.02, 0.0, 0.0, -0.02, -0.02]], index=index)
    width = pd.DataFrame([[0.01, 0.02, 0.01, 0.01, 0.01, 0.02]], index=index)
    long, short = strategy.legs(prediction, strategy.TradingRule(1 / 3, 1 / 3, 1))
    score = strategy.interval_score(prediction, prediction - width, prediction + width, 0.8)
    sized = strategy.leg_weights(long, short, score)[0]
    equal = strategy.leg_weights(long, short)[0]
    assert np.array_equal(sized != 0, equal != 0)  # the same names
    # weights in proportion to 1 / sigma^2: 4:1 in each leg
    assert sized[:2] == pytest.approx([0.8, 0.2]) and sized[4:] == pytest.approx([-0.8, -0.2])
    assert sized.sum() == pytest.approx(0.0) and np.abs(sized).sum() == pytest.approx(2.0)


def test_execution_timing_uses_the_next_open_or_close():
    frame = pd.DataFrame(
        {
            "symbol": ["A"] * 4,
            "date": pd.date_range("2024-01-01", periods=4),
            "close": [100.0, 110.0, 99.0, 104.0],
            "open": [100.0, 105.0, 100.0, 102.0],
        }
    )
    frame["label"] = frame["close"].shift(-1) / frame["close"] - 1
    frame["overnight_gap"] = frame["open"] / frame["close"].shift(1) - 1
    next_open = strategy.realized_returns(frame, "next_open")
    next_close = strategy.realized_returns(frame, "next_close")
    assert next_open[0] == pytest.approx(100.0 / 105.0 - 1)  # open day 2 -> open day 3
    assert next_close[0] == pytest.approx(99.0 / 110.0 - 1)  # close day 2 -> close day 3
    assert np.isnan(next_open[-2]) and np.isnan(next_close[-1])
    with pytest.raises(ValueError, match="execution"):
        strategy.realized_returns(frame, "same_close")


def test_returns_across_a_missing_day_are_not_made_up():
    # the dataset leaves out the embargo days between segments: the row after 2024-01-03 is
    # 2024-01-08, which is not the next trading day of the market's calendar
    calendar = pd.bdate_range("2024-01-01", periods=8)
    kept = calendar.delete([3, 4])  # 2024-01-04 and -05 dropped
    frame = pd.DataFrame({"symbol": "A", "date": kept, "label": 0.01, "overnight_gap": 0.002})
    for execution in strategy.EXECUTIONS:
        blind = strategy.realized_returns(frame, execution)
        honest = strategy.realized_returns(frame, execution, calendar)
        before_gap = frame["date"] == calendar[2]
        assert np.isfinite(blind[before_gap]).all()  # the frame's own dates cannot tell
        assert np.isnan(honest[before_gap]).all(), execution
        assert np.isfinite(honest[frame["date"] == calendar[0]]).all()
    forward = forward_returns(frame, horizons=(1, 2), calendar=calendar)
    assert np.isnan(forward.loc[frame["date"] == calendar[2], "fwd_2"]).all()
    assert forward.loc[frame["date"] == calendar[0], "fwd_2"].iloc[0] == pytest.approx(1.01**2 - 1)


def test_a_flat_signal_never_puts_a_name_in_both_legs_and_a_thin_day_keeps_the_book():
    signal = pd.DataFrame([[0.01] + [0.0] * 8 + [-0.01], [np.nan] * 10, [0.01] + [0.0] * 9])
    long, short = strategy.legs(signal, strategy.TradingRule(0.2, 0.2, 1))
    assert not (long & short).any()
    assert long[0].sum() == short[0].sum() == 2
    # a day without predictions revises nothing: the book is carried, not sold
    assert (long[1] == long[0]).all() and (short[1] == short[0]).all()


def test_regimes_and_surprise_buckets():
    up = pd.Series(0.01, index=pd.date_range("2024-01-01", periods=80))
    up.iloc[::3] = -0.004
    regime = market_regimes(up, window=20, threshold=0.5)
    assert (regime.iloc[:19] == "warm-up").all() and (regime.iloc[30:] == "bull").all()
    assert (market_regimes(-up, 20, 0.5).iloc[30:] == "bear").all()
    assert list(surprise_buckets(np.array([0.0, 0.01, 0.2, -0.01, -0.3]))) == [
        "in line", "beat small", "beat large", "miss small", "miss large",
    ]  # fmt: skip


def test_refit_windows_end_an_embargo_before_their_fold():
    dates = pd.bdate_range("2024-01-01", periods=120)
    dataset = pd.DataFrame({"date": np.repeat(dates, 2), "symbol": ["A", "B"] * 120})
    for start in (60, 90):
        fold = dates[start : start + 30].to_numpy()
        split = walkforward._relabel(dataset, fold, embargo=2, val_fraction=0.2)
        seen = dataset.loc[split.isin(["train", "val"]), "date"]
        assert seen.max() < fold[0] and seen.max() == dates[start - 3]
        assert (
            dataset.loc[split == "val", "date"].min() > dataset.loc[split == "train", "date"].max()
        )
        assert set(dataset.loc[split == "test", "date"]) == set(fold)
        assert (split[dataset["date"] > fold[-1]] == "none").all()
    with pytest.raises(guard.LeakError, match="has seen the period"):
        guard.check_window(dates[60], dates[60], "a model")


def _walk_forward(seed: int = 0):
    """A dataset of 40 days x 12 names and a walk-forward over its last 20 days whose
    prediction holds some signal, with a 0.8 (p10-p90) and a 0.5 (p25-p75) interval."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-01", periods=40)
    dataset = pd.DataFrame(
        [(s, d) for d in dates for s in [f"S{i:02d}" for i in range(12)]],
        columns=["symbol", "date"],
    )
    n = len(dataset)
    dataset["label"] = rng.normal(0.0, 0.02, n)
    dataset.loc[::7, "label"] = 0.0  # unmoved rows: no direction to get right
    dataset["overnight_gap"] = rng.normal(0.0, 0.005, n)
    dataset["mkt_ret_1d"] = dataset.groupby("date")["label"].transform("mean")
    dataset["vol_20d"] = rng.uniform(0.1, 0.5, n)
    dataset["eps_surprise"] = rng.normal(0.0, 0.05, n)
    dataset["split"] = np.where(dataset["date"] < dates[20], "train", "test")
    rows = dataset.loc[dataset["split"] == "test", ["symbol", "date", "label"]]
    prediction = 0.5 * rows["label"].to_numpy() + rng.normal(0.0, 0.02, len(rows))
    rows = rows.assign(
        prediction=prediction, sigma=0.02, p50=prediction, fold=0,
        p10=prediction - 0.0256, p90=prediction + 0.0256,
        p25=prediction - 0.0135, p75=prediction + 0.0135,
    )  # fmt: skip
    signals = {"linear": rng.normal(0.0, 0.01, len(rows)), "tree": rng.normal(0.0, 0.01, len(rows))}
    return dataset, walkforward.WalkForward(rows.reset_index(drop=True), signals)


def test_a_fixed_backtest_replays_the_rule_the_version_serves():
    dataset, walk = _walk_forward()
    settings = BacktestSettings.from_config(compose(["experiment=quick"]))
    settings = dataclasses.replace(settings, segments=("test",), regime_window=5, rolling_days=5)
    frictions = _flat_frictions(dataset["date"].unique(), dataset["symbol"].unique())

    def online(served=None, config=settings):
        backtest = judge(walk, dataset, config, Market(frictions), False, served=served)
        return backtest.online_rule, backtest.metrics["bt_online_coverage_80"]

    aci = ServedOnline(dataclasses.replace(settings.online, rule="aci"), ())
    assert settings.online.rule == "pid"
    configured = dataclasses.replace(settings, online=aci.settings)
    assert online(aci) == ("aci, the rule the version serves", online(config=configured)[1])
    assert online()[0] == "pid, calibrate.online"  # a static version: the config's rule
    assert online()[1] != online(aci)[1]
    elsewhere = ServedOnline(dataclasses.replace(settings.online, level=0.5), ())
    with pytest.raises(ValueError, match="online rule at level 0.5, the backtest judges"):
        online(elsewhere)


@pytest.mark.parametrize("level", [*SERVED_LEVELS, 0.5])
def test_metric_names_and_interval_columns_follow_the_level(level, monkeypatch):
    # 0.5 stands for a level the served answer might hold one day: nothing but the table of
    # served intervals has to change for the backtest to judge it
    monkeypatch.setitem(INTERVALS, 0.5, ("p25", "p75"))
    dataset, walk = _walk_forward()
    settings = BacktestSettings.from_config(compose(["experiment=quick"]))
    settings = dataclasses.replace(
        settings, level=level, segments=("test",), regime_window=5, rolling_days=5,
        online=dataclasses.replace(settings.online, level=level),
    )  # fmt: skip
    frictions = _flat_frictions(dataset["date"].unique(), dataset["symbol"].unique())
    backtest = judge(walk, dataset, settings, Market(frictions), by_surprise=True)
    lower, upper = INTERVALS[level]
    rows, metrics = backtest.rows, backtest.metrics
    assert coverage_name(level) == f"bt_coverage_{round(level * 100)}"
    expected = interval_metrics(rows[lower], rows[upper], rows["label"], level)
    for name, value in expected.items():  # the names evaluation.intervals gives the level
        assert metrics[f"bt_{name}"] == pytest.approx(value)
    assert metrics[coverage_name(level)] == coverage(rows[lower], rows[upper], rows["label"])
    other = [f"_{level_tag(v)}" for v in INTERVALS if v != level]
    assert not [k for k in metrics if any(k.endswith(o) for o in other)]
    assert metrics["bt_days"] == 20 and metrics["bt_leak_flag"] in (0.0, 1.0)
    # the daily series and every breakdown judge the same interval
    daily = backtest.daily
    assert daily["cumulative_coverage"].iloc[-1] == pytest.approx(metrics[coverage_name(level)])
    assert daily["cumulative_mae"].iloc[-1] == pytest.approx(metrics["bt_mae"])
    assert daily["cumulative_dir_acc"].iloc[-1] == pytest.approx(metrics["bt_dir_acc"])
    assert set(backtest.tables) == {
        breakdowns.MARKET_REGIME, breakdowns.VOLATILITY, breakdowns.SURPRISE
    }  # fmt: skip
    for table in backtest.tables.values():
        assert f"coverage_{level_tag(level)}" in table.columns
        share = (table[f"coverage_{level_tag(level)}"] * table["rows"]).sum() / table["rows"].sum()
        assert share == pytest.approx(metrics[coverage_name(level)])


def test_a_tuned_model_gets_a_deflated_sharpe_for_its_trials():
    dataset, walk = _walk_forward()
    settings = BacktestSettings.from_config(compose(["experiment=quick"]))
    settings = dataclasses.replace(settings, segments=("test",), regime_window=5, rolling_days=5)
    frictions = _flat_frictions(dataset["date"].unique(), dataset["symbol"].unique())
    trained = judge(walk, dataset, settings, Market(frictions), by_surprise=False).metrics
    tuned = judge(walk, dataset, settings, Market(frictions), False, trials=50).metrics
    assert "bt_strategy_deflated_sharpe" not in trained and tuned["bt_trials"] == 50
    # fifty tries make the same Sharpe less convincing than one
    assert 0.0 <= tuned["bt_strategy_deflated_sharpe"] < tuned["bt_strategy_psr"] <= 1.0


def test_direction_accuracy_has_one_home():
    prediction = np.array([0.1, -0.2, 0.3, 0.0, -0.1])
    actual = np.array([0.2, 0.1, 0.0, -0.1, -0.3])  # right, wrong, unmoved, wrong, right
    assert direction_accuracy(prediction, actual) == pytest.approx(2 / 4)
    dates = np.zeros(5)
    assert point_metrics(prediction, actual, dates)["dir_acc"] == pytest.approx(0.5)
    assert np.isnan(direction_accuracy(prediction, np.zeros(5)))


@pytest.fixture(scope="module")
def store(quick_chain):
    """A copy of the session's quick chain, exported: the tests add backtests, predictions
    and a planted drift to it."""
    with quick_chain.open("exported", copy=True) as (root, cfg):
        yield root, cfg, quick_chain.runs["prepare"]


def test_the_guard_catches_a_feature_that_peeks_at_the_next_day(store, tmp_path):
    _, cfg, prepare_id = store
    dataset = load_prepared(prepare_id, tmp_path).dataset
    db = Store(str(cfg().store.url))
    ohlcv, earnings = db.read("ohlcv"), db.read("earnings")
    features = ["ret_1d", "vol_20d", "eps_surprise", "past_reaction_abs"]
    dates = np.sort(dataset["date"].unique())[[-60, -5]]
    honest = guard.point_in_time(dataset, features, ohlcv, earnings, dates, 126)
    assert len(honest) == 2 and honest["max_rel_diff"].max() < 1e-6
    leaky = dataset.copy()
    leaky["ret_1d"] = leaky["label"]  # tomorrow's return as today's feature
    with pytest.raises(guard.LeakError, match=r"\['ret_1d'\]"):
        guard.point_in_time(leaky, features, ohlcv, earnings, dates, 126)


def test_fixed_backtest_reports_every_section_and_logs_predictions(store):
    root, cfg, _ = store
    run = mlflow.get_run(run_backtest(cfg("backtest.write_predictions=true")))
    metrics = run.data.metrics
    judged = coverage_name(float(cfg().backtest.level))
    for name in (
        "bt_mae", "bt_baseline_zero_mae", "bt_ic", "bt_icir", judged,
        "bt_strategy_sharpe", "bt_strategy_max_drawdown", "bt_strategy_turnover",
        "bt_strategy_hit_rate", "bt_tree_strategy_sharpe", "bt_market_sharpe",
        "bt_baseline_linear_mae", "bt_oracle_mae", "bt_leak_flag",
        # the signal: IC decay, quintile spread, ranking turnover, sectors (synthetic)
        "bt_ic_h1", "bt_ic_h2", "bt_ic_h5", "bt_ic_h10", "bt_spread_q5_q1",
        "bt_spread_q5_q1_se", "bt_rank_autocorr", "bt_group_neutral_ic", "bt_oracle_ic_h5",
        # the books after costs, with Sharpe intervals, sizing and turnover control
        "bt_strategy_sharpe_ci_low", "bt_strategy_sharpe_ci_high", "bt_strategy_psr",
        "bt_tree_strategy_sharpe_ci_low", "bt_market_sharpe_ci_high", "bt_sized_strategy_sharpe",
        "bt_sizing_sharpe_diff_ci_low", "bt_turnover_control_sharpe_diff_ci_high",
        "bt_strategy_sortino", "bt_strategy_calmar", "bt_strategy_cost_bps",
    ):  # fmt: skip
        assert name in metrics, name
    assert metrics["bt_days"] >= 50  # the test days of the quick market
    assert metrics["bt_ic_h1"] == pytest.approx(metrics["bt_ic"])  # the same next-day IC
    # the served interval beside the online rule's replay of it
    assert metrics["bt_static_coverage_80"] == metrics[judged]
    assert 0.5 < metrics["bt_online_coverage_80"] < 1.0 and metrics["bt_online_width_80"] > 0
    low, high = metrics["bt_strategy_sharpe_ci_low"], metrics["bt_strategy_sharpe_ci_high"]
    assert low < metrics["bt_strategy_sharpe"] < high
    # the holding band trades less than the legs rebuilt every day
    assert metrics["bt_strategy_turnover"] < metrics["bt_daily_rebuild_strategy_turnover"]
    assert "bt_strategy_deflated_sharpe" not in metrics  # trained, not tuned
    html = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/backtest/backtest.html")
    for section in ("Verdict", "At a glance", "Forecasts", "Signal", "Trading view",
                    "Over time", "By market regime", "By volatility", "Leak guard"):  # fmt: skip
        assert f"<h2>{section}</h2>" in html, section
    assert "online rule (pid, the rule the version serves)" in html  # its metadata's
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "backtest")}
    pictures = {
        "equity_drawdown", "rolling_mae_ic", "coverage", "capacity", "at_a_glance",
        "ic_decay", "quantile_returns", "monthly_ic", "group_ic",
    }  # fmt: skip
    for picture in pictures:  # each on the page and beside it
        assert f'alt="{picture}"' in html and f"backtest/{picture}.png" in files, picture
    assert html.count("<img") == len(pictures)
    assert {"backtest/daily.parquet", "backtest/capacity.csv", "backtest/regimes.png"} <= files
    daily = pd.read_parquet(
        mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/backtest/daily.parquet")
    )
    assert daily.index.is_monotonic_increasing and len(daily) == metrics["bt_days"]
    # the cumulative columns end at the whole period's metrics
    assert daily["cumulative_mae"].iloc[-1] == pytest.approx(metrics["bt_mae"])
    assert daily["cumulative_rmse"].iloc[-1] == pytest.approx(metrics["bt_rmse"])
    assert daily["cumulative_dir_acc"].iloc[-1] == pytest.approx(metrics["bt_dir_acc"])
    assert daily["cumulative_coverage"].iloc[-1] == pytest.approx(metrics[judged])
    assert daily["cumulative_ic"].iloc[-1] == pytest.approx(metrics["bt_ic"])
    logged = Store(str(cfg().store.url)).read("model_predictions")
    assert len(logged) == len(
        pd.read_parquet(
            mlflow.artifacts.download_artifacts(
                f"runs:/{run.info.run_id}/backtest/predictions.parquet"
            )
        )
    )
    assert logged["actual"].notna().all() and (logged["p10"] < logged["p90"]).all()


def test_the_trials_behind_a_model_come_from_its_tuning_run(store):
    from nextday.steps.backtest import _study_trials

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("nextday").experiment_id
    tuned = client.create_run(experiment, tags={tags.STUDY: "nextday-normal"})
    client.log_metric(tuned.info.run_id, "study_trials", 24)
    trained = client.create_run(experiment)
    assert _study_trials(tuned.info.run_id) == 24
    assert _study_trials(trained.info.run_id) is None and _study_trials(None) is None


@pytest.mark.slow(seconds=45)  # with the module's store
def test_refit_backtest_fits_each_fold_on_its_past_only(store):
    _, cfg, _ = store
    run = mlflow.get_run(run_backtest(cfg("backtest.mode=refit", "backtest.refit_every=20")))
    html = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/backtest/backtest.html")
    assert "<h2>Refit folds</h2>" in html
    folds = pd.read_html(io.StringIO(html.split("<h2>Refit folds</h2>")[1]))[0]
    assert len(folds) >= 3
    assert (pd.to_datetime(folds["fitted_until"]) < pd.to_datetime(folds["first_date"])).all()
    assert run.data.metrics[coverage_name(float(cfg().backtest.level))] > 0.5


def test_monitor_joins_actuals_and_alerts_on_planted_drift(store, tmp_path):
    """Predictions logged through ModelInference get the right actuals; a planted shift of a
    feature's live values raises a drift alert with the retraining recommendation."""
    from nextday.inference import ModelInference
    from nextday.inference.prediction_log import PredictionLogger
    from nextday.steps.monitor import run_monitor

    _, cfg, prepare_id = store
    config = cfg()
    export = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("nextday").experiment_id],
        f"tags.`{tags.STEP}` = 'export'",
        order_by=["attributes.start_time DESC"],
    )[0]
    uri = f"runs:/{export.info.run_id}/{artifacts.SERVED_MODEL.path}"
    dataset = load_prepared(prepare_id, tmp_path).dataset
    live = dataset[(dataset["split"] == "test") & ~dataset["is_earnings"]]
    logger = PredictionLogger(str(config.store.url), background=False)
    model = ModelInference(uri, logger=logger)
    for _, day in live.groupby("date"):
        model.predict_batch(day[model.features], keys=day[["symbol", "date"]])
    logger.close()
    assert logger.written == len(live) and logger.dropped == 0

    db = Store(str(config.store.url))
    history = db.read("feature_history")
    last = np.sort(live["date"].unique())[-20:]
    shifted = history[history["ts"].isin(last)].assign(vol_20d=lambda f: f["vol_20d"] * 5)
    db.upsert("feature_history", shifted)  # the planted drift: volatility x5 lately

    run = mlflow.get_run(run_monitor(cfg(f"monitor.model={uri}", "monitor.min_rows=100")))
    logged = db.read("model_predictions", "model_version = :v", {"v": model.version})
    joined = logged.merge(
        dataset[["symbol", "date", "label"]], left_on=["symbol", "ts"], right_on=["symbol", "date"]
    )
    known = joined.dropna(subset=["actual"])
    assert len(known) >= len(live) - 30  # the last date has no next close yet
    np.testing.assert_allclose(known["actual"], known["label"], rtol=1e-9, atol=1e-12)
    report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/monitor/alerts.json")
    kinds = {(a["kind"], a["message"].split(":")[0]) for a in report["alerts"]}
    assert ("feature drift", "vol_20d") in kinds
    assert report["recommendation"].startswith("retrain")
    assert run.data.tags[tags.STEP] == "monitor"

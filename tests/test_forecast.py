"""The daily run (`forecast`): the calendar, the update's guards, the reports out at each run,
the book stepped by the backtest's rule, and features from a bounded window equal to
prepare's; then the whole loop on the built-in market and on a real price file that grows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextday.backtest import strategy
from nextday.backtest.costs import CostModel, daily_costs, frictions
from nextday.daily.book import next_book
from nextday.daily.calendar import TradingCalendar
from nextday.daily.features import as_of_features, due_before_open, known_reports
from nextday.daily.update import RestatedBarsError, restatements, settled, update
from nextday.data.schema import RawMarket, empty_earnings
from nextday.dataset.build import compute_features
from nextday.features import ALL_FEATURES
from real_data import real_closes, real_shaped_bars

NEW_YORK = "America/New_York"


def at(text: str) -> pd.Timestamp:
    """A New York wall-clock time as the run's clock."""
    return pd.Timestamp(text).tz_localize(NEW_YORK).tz_convert("UTC")


def test_the_next_session_comes_from_the_exchange_calendar():
    xnys = TradingCalendar("XNYS")
    assert xnys.next_session("2026-12-04") == pd.Timestamp("2026-12-07")  # Friday -> Monday
    assert xnys.next_session("2026-11-25") == pd.Timestamp("2026-11-27")  # Thanksgiving
    assert xnys.next_session("2025-12-24") == pd.Timestamp("2025-12-26")  # Christmas
    assert xnys.next_session("2026-07-02") == pd.Timestamp("2026-07-06")  # July 3rd observed
    assert not xnys.is_session("2026-11-26") and xnys.is_session("2026-11-27")
    # a run during trading hours: today's session has not closed, yesterday's is the newest
    assert xnys.last_closed(at("2026-12-07 15:00")) == pd.Timestamp("2026-12-04")
    assert xnys.last_closed(at("2026-12-07 16:31")) == pd.Timestamp("2026-12-07")
    # the day after Thanksgiving closes at 13:00: its bar settles at 13:30
    assert xnys.last_closed(at("2026-11-27 13:45")) == pd.Timestamp("2026-11-27")
    assert xnys.last_closed(at("2026-11-27 13:15")) == pd.Timestamp("2026-11-25")
    weekdays = TradingCalendar("weekdays")  # the built-in market's calendar
    assert weekdays.next_session("2023-12-22") == pd.Timestamp("2023-12-25")
    with pytest.raises(ValueError, match="XNYZ.*not an exchange-calendars name"):
        TradingCalendar("XNYZ").next_session("2026-12-04")


def _bars(symbols=("AAA", "BBB", "CCC"), start="2026-09-01", end="2026-12-07") -> pd.DataFrame:
    days = TradingCalendar("XNYS").sessions(start, end)
    rng = np.random.default_rng(0)
    frames = []
    for symbol in symbols:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol, "ts": days, "open": close * 0.999, "high": close * 1.01,
                    "low": close * 0.99, "close": close, "volume": 1e6 + rng.integers(0, 1e5, len(days)),
                }
            )
        )  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_a_bar_of_a_session_not_yet_closed_or_without_a_session_is_never_used():
    bars = _bars(end="2026-12-07")
    holiday = bars.iloc[[0]].assign(ts=pd.Timestamp("2026-11-26"))  # a vendor bar on Thanksgiving
    kept, unsettled, off_calendar = settled(
        pd.concat([bars, holiday]), TradingCalendar("XNYS"), pd.Timestamp("2026-12-07"),
        at("2026-12-07 14:00"),
    )  # fmt: skip
    assert kept["ts"].max() == pd.Timestamp("2026-12-04")
    assert unsettled == 3 and off_calendar == 1  # each symbol's partial bar of 2026-12-07


def test_a_restated_bar_is_found_counted_and_handled_by_policy(quick_cfg):
    bars = _bars(start="2026-06-01", end="2026-12-04")
    stored = bars[bars["ts"] <= "2026-12-03"]
    source = bars.copy()
    # the vendor revised one close, and adjusted a split backwards on CCC (every price halved)
    source.loc[(source["symbol"] == "AAA") & (source["ts"] == "2026-12-01"), "close"] *= 1.01
    ccc = source["symbol"] == "CCC"
    source.loc[ccc, ["open", "high", "low", "close"]] /= 2
    found = restatements(stored, source[source["ts"] >= "2026-11-25"])
    assert set(found["symbol"]) == {"AAA", "CCC"}
    assert len(found[found["symbol"] == "AAA"]) == 1
    market = RawMarket(source, empty_earnings(), "csv")
    calendar, now = TradingCalendar("XNYS"), at("2026-12-04 18:00")
    brought = update(
        stored, market, calendar, pd.Timestamp("2026-12-04"), now, quick_cfg.quality, "report"
    )
    # the new session is stored; no stored bar is overwritten, and CCC's new bar, adjusted
    # while its stored history is not, is a split-like jump that the quality policy drops
    assert sorted(brought.bars["symbol"]) == ["AAA", "BBB"]
    assert (brought.bars["ts"] == pd.Timestamp("2026-12-04")).all()
    assert brought.restated_symbols == ["AAA", "CCC"]
    assert "quality checks" in brought.skipped["CCC"]
    with pytest.raises(
        RestatedBarsError, match=r"restated .*AAA 2026-12-01 close.*nothing was written"
    ):
        update(
            stored, market, calendar, pd.Timestamp("2026-12-04"), now, quick_cfg.quality, "refuse"
        )


def _reports() -> pd.DataFrame:
    rows = [  # symbol, announced, timing, session date
        ("AAA", "2026-12-03 16:05", "amc", "2026-12-03"),  # out after the as-of close
        ("BBB", "2026-12-04 06:30", "bmo", "2026-12-03"),  # before the next open: pending
        ("CCC", "2026-12-04 16:05", "amc", "2026-12-04"),  # tomorrow evening: not yet
    ]
    frame = pd.DataFrame(rows, columns=["symbol", "ts", "timing", "session_date"])
    frame[["ts", "session_date"]] = frame[["ts", "session_date"]].apply(pd.to_datetime)
    return frame.assign(eps_estimate=1.0, eps_actual=1.1)


def test_the_reports_out_at_the_evening_and_at_the_pre_open_run():
    as_of = pd.Timestamp("2026-12-03")
    reports = _reports()
    assert set(known_reports(reports, as_of, "evening")["symbol"]) == {"AAA"}
    assert set(known_reports(reports, as_of, "pre_open")["symbol"]) == {"AAA", "BBB"}
    assert due_before_open(reports, as_of) == {"BBB"}


def test_the_daily_book_is_the_backtests_book_day_by_day():
    """Stepped one close at a time from the positions table's book, the daily run's book is
    the backtest's `legs` and `leg_weights` over the same days, and its orders cost what the
    backtest's `daily_costs` charges those days."""
    bars = _bars(symbols=[f"S{i:02d}" for i in range(25)], start="2026-06-01", end="2026-12-04")
    days = TradingCalendar("XNYS").sessions("2026-10-01", "2026-12-04")
    rng = np.random.default_rng(3)
    signal = pd.DataFrame(
        rng.normal(size=(len(days), 25)), index=days, columns=sorted(bars["symbol"].unique())
    )
    signal.iloc[5:9, 3] = np.nan  # a name that does not trade for a few days
    rule = strategy.TradingRule(quantile=0.2, exit_quantile=0.4, rebalance_every=5)
    costs = CostModel(5.0, 5.0, 1.0, 50.0, 21, 20, 20, 0.5)
    long, short = strategy.legs(signal, rule)
    expected = pd.DataFrame(strategy.leg_weights(long, short), index=days, columns=signal.columns)
    wide = frictions(bars, costs, days)
    expected_cost = daily_costs(strategy.trades(expected), wide, 1e7, costs)["cost"]
    held, book_day = pd.DataFrame({"symbol": [], "weight": []}), None
    for day in days:
        today = signal.loc[day].dropna()
        forecast = pd.DataFrame({"symbol": today.index, "prediction": today.to_numpy()})
        book = next_book(forecast, held, book_day, bars, day, rule, 1e7, costs)
        weights = book.positions.set_index("symbol")["weight"].reindex(signal.columns).fillna(0.0)
        np.testing.assert_allclose(weights.to_numpy(), expected.loc[day].to_numpy(), atol=1e-12)
        assert book.orders["estimated_cost"].sum() / 1e7 == pytest.approx(
            expected_cost[day], rel=1e-9
        )
        held, book_day = book.positions, book.day
    assert book_day == len(days) - 1


def test_features_from_a_bounded_window_equal_the_whole_historys():
    """20 consecutive closes of real prices (8 years): the as-of features from the last 320
    sessions equal the ones computed from the whole history, to float32 precision."""
    closes = real_closes()
    bars = (
        closes.rename_axis("ts")
        .reset_index()
        .melt(id_vars="ts", var_name="symbol", value_name="close")
    )
    bars = bars.assign(open=bars["close"], high=bars["close"], low=bars["close"], volume=1.0)
    whole, _ = compute_features(bars, empty_earnings(), 126)
    dates = closes.index[-20:]
    for as_of in dates:
        window = bars[
            (bars["ts"] <= as_of) & (bars["ts"] > closes.index[closes.index.get_loc(as_of) - 320])
        ]
        daily = as_of_features(window, empty_earnings(), as_of, 60, 126).rows.set_index("symbol")
        full = whole[whole["date"] == as_of].set_index("symbol").loc[daily.index]
        both = np.isfinite(full[ALL_FEATURES].to_numpy())
        np.testing.assert_allclose(
            daily[ALL_FEATURES].to_numpy()[both], full[ALL_FEATURES].to_numpy()[both],
            rtol=1e-6, atol=1e-7,
        )  # fmt: skip
        assert len(daily) == closes.shape[1]


def test_a_symbol_without_todays_bar_or_history_is_skipped_and_named():
    bars = real_shaped_bars(symbols=4, start="2016-01-01", end="2016-12-30")
    last = bars["ts"].max()
    halted = bars["symbol"].unique()[0]
    bars = bars[~((bars["symbol"] == halted) & (bars["ts"] == last))]
    young = bars[bars["symbol"] == bars["symbol"].unique()[1]].tail(30).assign(symbol="NEW")
    found = as_of_features(pd.concat([bars, young]), empty_earnings(), last, 60, 126)
    assert f"no bar on {last.date()}" in found.skipped[halted]
    assert "30 bars of history, the features need 60" in found.skipped["NEW"]
    assert len(found.rows) == 3


# --- the daily run end to end --------------------------------------------------------------

RELAXED = (
    "export.gate.significance=1.0",
    "export.gate.coverage_band=[0.0,1.0]",
    "export.gate.online_score_slack=1.0",
)


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    """The quick built-in market with both models exported and promoted (the gate relaxed:
    the quick models are too small to pass it)."""
    from conftest import quick_root
    from nextday.steps.calibrate import run_calibrate
    from nextday.steps.export import run_export
    from nextday.steps.prepare import run_prepare
    from nextday.steps.train import run_train

    root = tmp_path_factory.mktemp("forecast")
    with quick_root(root) as cfg:
        run_prepare(cfg())
        for model in ("normal", "earnings"):
            run_train(cfg(f"model={model}"))
            run_calibrate(cfg(f"model={model}"))
            run_export(cfg(f"model={model}", *RELAXED))
        yield root, cfg


def _table(cfg, name: str) -> pd.DataFrame:
    from nextday.data.store import Store

    return Store(str(cfg().store.url)).read(name)


def test_forecast_writes_tomorrows_forecast_a_book_and_orders(daily):
    import mlflow

    from nextday.contracts import tags
    from nextday.steps.forecast import run_forecast

    root, cfg = daily
    stored = _table(cfg, "ohlcv")
    last = pd.Timestamp(stored["ts"].max())
    (run_id,) = run_forecast(cfg())
    as_of = last + pd.offsets.BDay(1)  # the built-in market: the session after its last bar
    run = mlflow.get_run(run_id)
    assert run.data.tags[tags.AS_OF] == str(as_of.date())
    assert run.data.tags[tags.TARGET_DATE] == str((as_of + pd.offsets.BDay(1)).date())
    forecasts = _table(cfg, "forecasts")
    assert (pd.to_datetime(forecasts["as_of"]) == as_of).all()
    symbols = set(stored["symbol"])
    metrics = run.data.metrics
    assert (
        len(forecasts) + metrics["forecast_skipped"]
        == len(symbols)
        == metrics["forecast_symbols"] + metrics["forecast_skipped"]
    )
    assert set(forecasts["model"]) <= {"normal", "earnings"}
    assert (forecasts["p10"] <= forecasts["p50"]).all() and (
        forecasts["p50"] <= forecasts["p90"]
    ).all()
    # every answer in the prediction log once, with the version that gave it
    logged = _table(cfg, "model_predictions")
    logged = logged[pd.to_datetime(logged["ts"]) == as_of]
    assert len(logged) == len(forecasts)
    merged = forecasts.merge(logged, on="symbol")
    assert (merged["model_name_x"] == merged["model_name_y"]).all()
    np.testing.assert_allclose(merged["prediction"], merged["predicted"])
    # the book: the legs of the backtest's rule, the orders that build it, all in the store
    positions = _table(cfg, "positions")
    assert positions["weight"].clip(lower=0).sum() == pytest.approx(1.0)
    assert positions["weight"].clip(upper=0).sum() == pytest.approx(-1.0)
    assert metrics["forecast_orders"] == len(positions) and metrics[
        "forecast_turnover"
    ] == pytest.approx(2.0)
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "forecast")}
    assert {"forecast/forecast.csv", "forecast/orders.csv", "forecast/forecast.html"} <= files
    orders = pd.read_csv(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/forecast/orders.csv"))
    assert set(orders["side"]) == {"buy", "sell"} and (orders["estimated_cost"] > 0).all()
    for stage in ("update", "features", "score", "book", "write"):
        assert metrics[f"forecast_seconds_{stage}"] >= 0

    # the same day again: the same rows, no answer logged twice, the book not advanced
    run_forecast(cfg(f"forecast.as_of={as_of.date()}"))
    again = _table(cfg, "forecasts")
    pd.testing.assert_frame_equal(
        again.drop(columns="created_at").sort_values("symbol").reset_index(drop=True),
        forecasts.drop(columns="created_at").sort_values("symbol").reset_index(drop=True),
    )
    relogged = _table(cfg, "model_predictions")
    assert len(relogged[pd.to_datetime(relogged["ts"]) == as_of]) == len(logged)
    assert set(_table(cfg, "positions")["book_day"]) == {0}

    # the next evenings, caught up in order: the book goes on from the one before
    later = as_of + pd.offsets.BDay(3)
    ids = run_forecast(cfg(f"forecast.as_of={later.date()}", "forecast.catch_up=true"))
    assert [mlflow.get_run(i).data.tags[tags.AS_OF] for i in ids] == [
        str((as_of + pd.offsets.BDay(k)).date()) for k in (1, 2, 3)
    ]
    books = _table(cfg, "forecast_runs").sort_values("as_of")
    assert list(books["book_day"]) == [0, 1, 2, 3]


def test_monitor_fills_the_actuals_of_the_days_the_update_brought(daily):
    import mlflow

    from nextday.steps.monitor import run_monitor

    root, cfg = daily
    run = mlflow.get_run(run_monitor(cfg()))
    logged = _table(cfg, "model_predictions")
    days = _table(cfg, "forecast_runs")["as_of"]
    daily_rows = logged[pd.to_datetime(logged["ts"]).isin(pd.to_datetime(days))]
    known = daily_rows.dropna(subset=["actual"])
    # every forecast day but the last has its next close in the store
    assert pd.to_datetime(known["ts"]).nunique() == len(days) - 1
    assert run.data.metrics["monitor_rows_with_actual"] >= len(
        known[known["model_name"] == "nextday-normal"]
    )


def test_a_second_run_on_the_same_store_waits_then_refuses(daily):
    from nextday.cli import main
    from nextday.daily.lock import StoreBusyError, daily_lock
    from nextday.data.store import Store

    root, cfg = daily
    before = _table(cfg, "forecasts")
    with daily_lock(Store(str(cfg().store.url)), 1.0, "a test"):
        with pytest.raises(StoreBusyError, match="another forecast or monitor run holds"):
            from nextday.steps.forecast import run_forecast

            run_forecast(cfg("forecast.lock_timeout_s=1"))
        assert (
            main(
                ["forecast", "experiment=quick", f"paths.root={root}", "forecast.lock_timeout_s=1"]
            )
            == 2
        )
    pd.testing.assert_frame_equal(_table(cfg, "forecasts"), before)


def test_a_report_before_the_open_waits_for_the_pre_open_run(daily):
    """At the evening run a report due before the next open is not out: the normal model's
    forecast stands, marked; the pre-open run rescores those symbols only, with the earnings
    model, and rebuilds the same day's book from the same book before it."""
    import mlflow

    from nextday.steps.forecast import run_forecast

    root, cfg = daily
    for _ in range(40):  # evenings of the continued market until a report lands before an open
        (run_id,) = run_forecast(cfg())
        if mlflow.get_run(run_id).data.metrics["forecast_earnings_pending"] > 0:
            break
    else:
        pytest.fail("no report before an open in 40 sessions of the continued market")
    as_of = pd.Timestamp(mlflow.get_run(run_id).data.tags["nextday.as_of"])
    evening = _table(cfg, "forecasts")
    evening = evening[pd.to_datetime(evening["as_of"]) == as_of].set_index("symbol")
    pending = set(evening.index[evening["earnings_pending"].astype(bool)])
    assert (evening.loc[sorted(pending), "model"] == "normal").all()
    book_day = _table(cfg, "forecast_runs").set_index("as_of")["book_day"]

    (pre_open,) = run_forecast(cfg(f"forecast.as_of={as_of.date()}", "forecast.session=pre_open"))
    after = _table(cfg, "forecasts")
    after = after[pd.to_datetime(after["as_of"]) == as_of].set_index("symbol")
    assert set(after.index) == set(evening.index)
    rescored = after[after["session"] == "pre_open"]
    assert set(rescored.index) == pending and (rescored["model"] == "earnings").all()
    assert not rescored["earnings_pending"].any()
    unchanged = after.drop(index=sorted(pending))
    np.testing.assert_allclose(
        unchanged["prediction"], evening.drop(index=sorted(pending))["prediction"]
    )
    logged = _table(cfg, "model_predictions")
    logged = logged[
        (pd.to_datetime(logged["ts"]) == as_of) & (logged["model_name"] == "nextday-earnings")
    ]
    assert pending <= set(logged["symbol"])
    runs = _table(cfg, "forecast_runs")
    runs = runs[pd.to_datetime(runs["as_of"]) == as_of].set_index("session")
    assert set(runs.index) == {"evening", "pre_open"}
    assert runs.loc["pre_open", "book_day"] == runs.loc["evening", "book_day"] == book_day.max()
    assert mlflow.get_run(pre_open).data.metrics["forecast_scored"] == len(pending)


def test_a_session_without_a_forecast_is_an_alert_and_versions_shows_the_last_day(daily, capsys):
    import mlflow

    from nextday.steps.forecast import run_forecast
    from nextday.steps.monitor import run_monitor
    from nextday.steps.registry_commands import run_versions

    root, cfg = daily
    last = pd.Timestamp(_table(cfg, "forecast_runs")["as_of"].max())
    skipped, later = last + pd.offsets.BDay(1), last + pd.offsets.BDay(2)
    run_forecast(cfg(f"forecast.as_of={later.date()}"))  # the cron line missed an evening
    run = mlflow.get_run(run_monitor(cfg()))
    report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/monitor/alerts.json")
    missing = [a for a in report["alerts"] if a["kind"] == "forecast missing"]
    assert len(missing) == 1 and str(skipped.date()) in missing[0]["message"], report
    assert run.data.metrics["monitor_forecast_missing_sessions"] == 1
    assert run.data.tags["nextday.monitor.last_forecast"] == str(later.date())
    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/monitor/monitor.html")
    assert f"the last as of the close of {later.date()}" in page
    run_versions(cfg())
    assert f"daily forecast: last as of the close of {later.date()}" in capsys.readouterr().out


def test_a_production_version_of_other_inputs_is_refused():
    from types import SimpleNamespace

    from nextday.daily.scoring import VersionMismatchError, check_inputs

    other = SimpleNamespace(
        name="nextday-normal", version="7", features=["ret_1d", "alpha_158_kmid"], window=1
    )
    with pytest.raises(VersionMismatchError, match=r"v7 .*\['alpha_158_kmid'\].*refused"):
        check_inputs(other, "normal")
    sequence = SimpleNamespace(name="nextday-normal", version="8", features=["ret_1d"], window=20)
    with pytest.raises(VersionMismatchError, match="sequence model"):
        check_inputs(sequence, "normal")


@pytest.mark.postgres
def test_the_daily_lock_holds_across_processes_on_postgresql(pg_url):
    import multiprocessing

    from nextday.daily.lock import daily_lock
    from nextday.data.store import Store

    store = Store(pg_url)
    with daily_lock(store, 1.0, "the first run"):
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            answer = pool.apply(_try_lock, (pg_url,))
        assert answer.startswith("refused: forecast 2: another forecast or monitor run holds")
    with context.Pool(1) as pool:  # released with the first run
        assert pool.apply(_try_lock, (pg_url,)) == "got it"


def _try_lock(url: str) -> str:
    from nextday.daily.lock import StoreBusyError, daily_lock
    from nextday.data.store import Store

    try:
        with daily_lock(Store(url), 1.0, "forecast 2"):
            return "got it"
    except StoreBusyError as error:
        return f"refused: {error}"


# --- on real prices: a vendor's OHLCV file that grows by a day each evening -------------------

VENDOR = (
    __import__("pathlib").Path(__file__).parent
    / "fixtures"
    / "real"
    / "sp500_ohlcv_2009_2010.csv.gz"
)
EVENINGS = 20


@pytest.fixture(scope="module")
def vendor(tmp_path_factory):
    """The normal model trained on the vendor file up to 20 sessions before its end (gate
    relaxed so that it serves), then 20 evenings of `forecast` and `monitor` on the file as it
    grows by one day each evening."""
    from conftest import quick_root
    from nextday.data.store import Store
    from nextday.steps.calibrate import run_calibrate
    from nextday.steps.export import run_export
    from nextday.steps.forecast import run_forecast
    from nextday.steps.monitor import run_monitor
    from nextday.steps.prepare import run_prepare
    from nextday.steps.train import run_train

    root = tmp_path_factory.mktemp("vendor")
    full = pd.read_csv(VENDOR, dtype={"Date": str})
    dates = sorted(full["Date"].unique())
    prices = root / "prices.csv"
    full[full["Date"] <= dates[-EVENINGS - 1]].to_csv(prices, index=False)
    chosen = ["data=csv", f"data.path={prices}", "forecast.models=[normal]"]
    with quick_root(root) as quick:
        cfg = lambda *more: quick(*chosen, *more)  # noqa: E731
        run_prepare(cfg())
        run_train(cfg())
        run_calibrate(cfg())
        run_export(cfg(*RELAXED))
        store = Store(str(cfg().store.url))
        through = []
        for day in dates[-EVENINGS:]:
            full[full["Date"] <= day].to_csv(prices, index=False)  # the vendor's new rows
            as_of = pd.Timestamp(day)
            run_forecast(cfg(f"forecast.as_of={as_of.date()}"), now=at(f"{as_of.date()} 18:00"))
            run_monitor(cfg())
            state = store.read("calibration_state")
            through.append(state["through"].max() if len(state) else None)
        yield root, cfg, full, [pd.Timestamp(d) for d in dates[-EVENINGS:]], store, through


def test_each_evenings_features_are_prepares_from_the_whole_file(vendor):
    """The no-look-ahead proof of the daily path: fed one day at a time, each day's features
    equal, to float32 precision, what prepare computes from the whole file, and the
    version's deterministic graph answers the same on both."""
    import onnxruntime as ort

    from nextday.data.csv_files import load_csv
    from nextday.data.quality import validate
    from nextday.dataset.build import build_dataset
    from nextday.inference import ModelInference

    root, cfg, full, days, store, _ = vendor
    whole = root / "whole.csv"
    full.to_csv(whole, index=False)
    market, _ = validate(load_csv(str(whole)), cfg().quality)
    reference = build_dataset(market, 60, 126).feature_history
    reference = reference.assign(ts=pd.to_datetime(reference["ts"])).set_index(["ts", "symbol"])
    stored = store.read("feature_history")
    stored = stored[pd.to_datetime(stored["ts"]).isin(days)].set_index(["ts", "symbol"])
    assert stored.index.get_level_values("ts").nunique() == EVENINGS
    common = stored.index.intersection(reference.index)
    assert len(common) >= 0.95 * len(stored), (len(common), len(stored))
    np.testing.assert_allclose(
        stored.loc[common, ALL_FEATURES].to_numpy(float),
        reference.loc[common, ALL_FEATURES].to_numpy(float),
        rtol=1e-6, atol=1e-7,
    )  # fmt: skip
    model = ModelInference("models:/nextday-normal/1", device="cpu")
    graph = ort.InferenceSession(str(model.folder / model.metadata.files["deterministic"]))
    name = graph.get_inputs()[0].name

    def answer(frame):
        return graph.run(None, {name: frame[model.features].to_numpy(np.float32)})[0].ravel()

    np.testing.assert_allclose(
        answer(stored.loc[common]), answer(reference.loc[common]), rtol=1e-5, atol=1e-8
    )


def test_the_daily_book_is_the_backtests_over_the_same_forecasts(vendor):
    from nextday.backtest.settings import BacktestSettings

    _, cfg, _, days, store, _ = vendor
    forecasts = store.read("forecasts")
    signal = forecasts.pivot(index="as_of", columns="symbol", values="prediction").sort_index()
    assert list(signal.index) == days
    rule = BacktestSettings.from_config(cfg()).trading
    long, short = strategy.legs(signal, rule)
    expected = pd.DataFrame(
        strategy.leg_weights(long, short), index=signal.index, columns=signal.columns
    )
    positions = store.read("positions").pivot(index="as_of", columns="symbol", values="weight")
    positions = positions.reindex(index=signal.index, columns=signal.columns).fillna(0.0)
    np.testing.assert_allclose(positions.to_numpy(), expected.to_numpy(), atol=1e-12)


def test_the_whole_loop_logs_once_fills_the_actuals_and_advances_the_online_state(vendor):
    _, cfg, _, days, store, through = vendor
    runs = store.read("forecast_runs")
    assert sorted(pd.to_datetime(runs["as_of"])) == days
    logged = store.read("model_predictions")
    logged = logged[pd.to_datetime(logged["ts"]).isin(days)]
    assert not logged.duplicated(["symbol", "ts", "model_name"]).any()
    assert len(logged) == len(store.read("forecasts"))
    filled = logged.dropna(subset=["actual"])
    assert pd.to_datetime(filled["ts"]).nunique() == EVENINGS - 1  # the last awaits tomorrow
    # the monitor advanced the online state once per evening with a new day of outcomes
    advanced = [t for t in through if t is not None and pd.notna(t)]
    assert len(set(advanced)) == EVENINGS - 1, through


def test_a_stale_source_is_refused_with_nothing_written(vendor):
    from nextday.cli import main

    root, cfg, _, days, store, _ = vendor
    before = {name: len(store.read(name)) for name in ("forecasts", "ohlcv", "model_predictions")}
    later = TradingCalendar("XNYS").next_session(days[-1])  # the file has no bar of it
    prices = root / "prices.csv"
    chosen = ["data=csv", f"data.path={prices}", f"forecast.as_of={later.date()}"]
    code = main(["forecast", "experiment=quick", f"paths.root={root}", *chosen])
    assert code == 2
    assert {name: len(store.read(name)) for name in before} == before

"""The daily run's incremental Yahoo download, replayed from recorded yfinance responses
(tests/fixtures/yfinance/incremental_*.csv) through the real parsing code of
`nextday.data.yahoo`, the daily feed and the update, onto a real SQLite store.

The window is NYSE 2024-11-19 to 2024-12-02: Thanksgiving (2024-11-28) has no session; BBB
stops trading after 2024-11-22; one response was made at 11:00 on 2024-12-02 (its last row
is that session's partial bar), one after the close, and one restates a stored close.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nextday.config import compose
from nextday.daily import ForecastRefused, feed
from nextday.daily.calendar import TradingCalendar
from nextday.daily.features import as_of_features
from nextday.daily.run import DailyRun, plan_days, run_day
from nextday.daily.scoring import Scorers
from nextday.daily.settings import ForecastSettings
from nextday.daily.update import RestatedBarsError, update
from nextday.data.schema import OHLCV_COLUMNS
from nextday.data.store import Store
from nextday.data.yahoo import Download, fetch_yfinance

FIXTURES = Path(__file__).parent / "fixtures" / "yfinance"
IN_SESSION, CLOSED, RESTATED = (
    "incremental_in_session.csv",
    "incremental_closed.csv",
    "incremental_restated.csv",
)
SYMBOLS = ["AAA", "BBB", "CCC"]
HOLIDAY = pd.Timestamp("2024-11-28")  # Thanksgiving: NYSE closed
# the store's newest bar of each symbol before the runs; BBB stops trading after 2024-11-22
STORED_THROUGH = {"AAA": "2024-11-26", "BBB": "2024-11-22", "CCC": "2024-11-26"}
# the overlap's first session: overlap_days (5) sessions before the newest stored bar
SINCE = pd.Timestamp("2024-11-19")
HISTORY_SESSIONS = 120  # stored sessions before the recorded window (min_rows_per_symbol: 80)
NEW_YORK = "America/New_York"


def at(text: str) -> pd.Timestamp:
    """A New York wall-clock time as the run's clock."""
    return pd.Timestamp(text).tz_localize(NEW_YORK).tz_convert("UTC")


def recorded(name: str) -> pd.DataFrame:
    frame = pd.read_csv(FIXTURES / name, header=[0, 1], index_col=0)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index), name="Date")
    frame.columns = frame.columns.set_names(["Ticker", "Price"])
    return frame


class RecordedYahoo:
    """Stands in for the yfinance module: answers `download` with one recorded response, cut
    to [start, end) as Yahoo cuts its answer, and has no earnings table for any symbol
    (`get_earnings_dates` gives None, as yfinance does then)."""

    def __init__(self, name: str):
        self.frame = recorded(name)
        self.calls: list[dict] = []

    def download(self, tickers, start=None, end=None, **kwargs):
        self.calls.append({"tickers": list(tickers), "start": start, "end": end, **kwargs})
        rows = self.frame.index
        window = (rows >= pd.Timestamp(start)) & (rows < pd.Timestamp(end))
        present = [t for t in self.frame.columns.get_level_values(0).unique() if t in tickers]
        return self.frame.loc[window, present]

    def Ticker(self, symbol):  # mirrors yfinance.Ticker
        return SimpleNamespace(get_earnings_dates=lambda limit=12: None)


@pytest.fixture(scope="module")
def cfg():
    return compose(["data=yfinance", f"data.symbols=[{','.join(SYMBOLS)}]"])


@pytest.fixture(scope="module")
def calendar():
    return TradingCalendar("XNYS")


def _vendor_bars(name: str) -> pd.DataFrame:
    """A recorded response as the yfinance parser reads it."""
    market = fetch_yfinance(
        SYMBOLS, "2024-11-19", "2024-12-04", Download(), client=RecordedYahoo(name)
    )
    return market.ohlcv


def _stored_bars(calendar: TradingCalendar) -> pd.DataFrame:
    """What earlier runs stored: HISTORY_SESSIONS sessions of a random walk that ends at the
    recorded window's first open, then the recorded bars up to STORED_THROUGH (the vendor's
    bars as it gave them then: the same as in the closed response)."""
    vendor = _vendor_bars(CLOSED)
    earlier = calendar.sessions("2023-11-01", SINCE - pd.Timedelta(days=1))[-HISTORY_SESSIONS:]
    rng = np.random.default_rng(20241119)
    frames = []
    for symbol, through in STORED_THROUGH.items():
        own = vendor[(vendor["symbol"] == symbol) & (vendor["ts"] <= pd.Timestamp(through))]
        steps = rng.normal(0.0, 0.01, len(earlier))
        close = np.round(own["open"].iloc[0] * np.exp(np.cumsum(steps[::-1])[::-1]), 2)
        opened = np.round(close * (1 + rng.normal(0.0, 0.003, len(earlier))), 2)
        history = pd.DataFrame(
            {
                "symbol": symbol,
                "ts": earlier,
                "open": opened,
                "high": np.round(np.maximum(opened, close) * 1.006, 2),
                "low": np.round(np.minimum(opened, close) * 0.994, 2),
                "close": close,
                "volume": rng.integers(500_000, 4_000_000, len(earlier)).astype(float),
            }
        )
        frames += [history, own[OHLCV_COLUMNS]]
    return pd.concat(frames, ignore_index=True).assign(source="yfinance")


@pytest.fixture
def store(tmp_path, calendar):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.create()
    store.upsert("ohlcv", _stored_bars(calendar))
    return store


def _window(store: Store) -> pd.DataFrame:
    """The store's yfinance bars, as the daily run reads them."""
    bars = store.read("ohlcv", "source = :source", {"source": "yfinance"})
    return bars.assign(ts=pd.to_datetime(bars["ts"]).dt.normalize())


def _bring(cfg, store, calendar, response, as_of, now, policy="report"):
    """The feed (real yfinance parsing) and the update, as run_day runs them."""
    as_of = pd.Timestamp(as_of)
    fetched = feed.fetch(
        cfg.data, store, SINCE, calendar.next_session(as_of), client=RecordedYahoo(response)
    )
    return fetched, update(_window(store), fetched, calendar, as_of, now, cfg.quality, policy)


def _days(bars: pd.DataFrame, symbol: str) -> list[pd.Timestamp]:
    return list(pd.to_datetime(bars.loc[bars["symbol"] == symbol, "ts"]))


def _bar(bars: pd.DataFrame, symbol: str, day: str) -> pd.Series:
    rows = bars[(bars["symbol"] == symbol) & (pd.to_datetime(bars["ts"]) == pd.Timestamp(day))]
    assert len(rows) == 1, f"{symbol} {day}: {len(rows)} bars"
    return rows.iloc[0]


# --- the recorded responses ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The inplace keyword")
@pytest.mark.parametrize("name", [IN_SESSION, CLOSED, RESTATED])
def test_the_recorded_responses_are_what_yfinance_download_assembles(monkeypatch, name):
    """Each fixture equals yfinance's own multi-ticker assembly of its per-ticker histories
    (BBB's history ends 2024-11-22: its later rows are NaN), and parses the same."""
    multi = pytest.importorskip("yfinance.multi")
    if not hasattr(multi, "Ticker"):
        pytest.skip("yfinance internals changed")
    response = recorded(name)

    class HistoryOnly:
        def __init__(self, ticker, session=None):
            self.ticker, self._price_history = ticker, None

        def history(self, **kwargs):
            frame = response[self.ticker].dropna(how="all").copy()
            frame["Volume"] = frame["Volume"].astype(np.int64)
            frame.index = frame.index.tz_localize(NEW_YORK)
            return frame

    monkeypatch.setattr(multi, "Ticker", HistoryOnly)
    import yfinance

    assembled = yfinance.download(
        tickers=SYMBOLS, start="2024-11-19", end="2024-12-04", group_by="ticker",
        auto_adjust=False, actions=False, threads=False, progress=False,
    )  # fmt: skip
    # tickers come in set order, which differs between interpreters: compare by name
    assembled = assembled[response.columns]
    pd.testing.assert_frame_equal(
        assembled, response, check_dtype=False, check_index_type=False, check_freq=False
    )
    real = SimpleNamespace(download=yfinance.download, Ticker=RecordedYahoo(name).Ticker)
    via_yfinance = fetch_yfinance(SYMBOLS, "2024-11-19", "2024-12-04", client=real)
    pd.testing.assert_frame_equal(via_yfinance.ohlcv, _vendor_bars(name))


def test_the_responses_differ_only_where_they_say():
    """The in-session response differs from the closed one only in 2024-12-02's bar (a
    partial bar), the restated one only in AAA's close of 2024-11-21; no response has a row
    on the holiday, and BBB is NaN after 2024-11-22."""
    in_session, closed, restated = recorded(IN_SESSION), recorded(CLOSED), recorded(RESTATED)
    assert HOLIDAY not in closed.index and closed.index[-1] == pd.Timestamp("2024-12-02")
    changed = (in_session != closed) & ~(in_session.isna() & closed.isna())
    assert set(closed.index[changed.any(axis=1)]) == {pd.Timestamp("2024-12-02")}
    restatement = (restated != closed) & ~(restated.isna() & closed.isna())
    assert restatement.to_numpy().sum() == 1
    assert restated.loc["2024-11-21", ("AAA", "Close")] == 102.55
    assert closed.loc["2024-11-21", ("AAA", "Close")] == 102.40
    assert closed["BBB"].loc["2024-11-25":].isna().all().all()
    assert closed["BBB"].loc[:"2024-11-22"].notna().all().all()


# --- the update on the recorded responses ----------------------------------------------------


def test_the_holiday_has_no_bar_and_the_next_session_follows_it(cfg, store, calendar):
    fetched, brought = _bring(cfg, store, calendar, CLOSED, "2024-12-02", at("2024-12-02 18:00"))
    assert not calendar.is_session(HOLIDAY)
    assert HOLIDAY not in set(fetched.ohlcv["ts"])
    assert brought.off_calendar == 0 and brought.unsettled == 0
    new = [pd.Timestamp(d) for d in ("2024-11-27", "2024-11-29", "2024-12-02")]
    assert _days(brought.bars, "AAA") == new and _days(brought.bars, "CCC") == new
    assert calendar.next_session("2024-11-27") == pd.Timestamp("2024-11-29")
    # the day after the holiday is the next bar of the series: its return is from 2024-11-27
    bars = pd.concat([_window(store)[OHLCV_COLUMNS], brought.bars], ignore_index=True)
    features = as_of_features(bars, brought.earnings, pd.Timestamp("2024-11-29"), 60, 126)
    aaa = features.rows.set_index("symbol").loc["AAA"]
    assert aaa["ret_1d"] == pytest.approx(103.60 / 102.85 - 1, rel=1e-6)


def test_the_in_session_partial_bar_is_never_used_until_its_session_has_settled(
    cfg, store, calendar
):
    # a run at 11:00: the newest closed session is 2024-11-29, and today's bar is partial
    now = at("2024-12-02 11:00")
    as_of = calendar.last_closed(now)
    assert as_of == pd.Timestamp("2024-11-29")
    fetched, brought = _bring(cfg, store, calendar, IN_SESSION, as_of, now)
    assert _bar(fetched.ohlcv, "AAA", "2024-12-02")["close"] == 103.90  # the partial bar
    assert brought.unsettled == 2  # AAA's and CCC's partial bars (BBB no longer trades)
    assert pd.Timestamp("2024-12-02") not in set(brought.bars["ts"])
    assert _days(brought.bars, "AAA") == [pd.Timestamp("2024-11-27"), pd.Timestamp("2024-11-29")]
    # a backfill of the day itself at 11:00 does not take it either: its session is open
    _, backfill = _bring(cfg, store, calendar, IN_SESSION, "2024-12-02", now)
    assert backfill.unsettled == 2 and backfill.bars["ts"].max() == pd.Timestamp("2024-11-29")
    # after the close, but within the settle minutes (16:00 + 30), it is not final yet
    _, early = _bring(cfg, store, calendar, CLOSED, "2024-12-02", at("2024-12-02 16:29"))
    assert early.unsettled == 2 and early.bars["ts"].max() == pd.Timestamp("2024-11-29")
    # once settled, the session's final bar is used
    _, settled = _bring(cfg, store, calendar, CLOSED, "2024-12-02", at("2024-12-02 16:31"))
    assert settled.unsettled == 0
    final = _bar(settled.bars, "AAA", "2024-12-02")
    assert final["close"] == 104.25 and final["high"] == 104.70 and final["volume"] == 3_398_740
    assert _bar(settled.bars, "CCC", "2024-12-02")["close"] == 56.80


def test_a_symbol_that_stopped_trading_gets_no_new_bar_and_is_skipped_naming_its_last_bar(
    cfg, store, calendar
):
    fetched, brought = _bring(cfg, store, calendar, CLOSED, "2024-12-02", at("2024-12-02 18:00"))
    # its NaN rows are no bars, and it is no failed symbol: it had bars in the window
    assert _days(fetched.ohlcv, "BBB")[-1] == pd.Timestamp("2024-11-22")
    assert not any(note.startswith("BBB:") for note in fetched.notes)
    assert "BBB" not in set(brought.bars["symbol"]) and "BBB" not in brought.skipped
    problems = brought.quality.problems
    partial = problems[(problems["kind"] == "partial_history") & (problems["symbol"] == "BBB")]
    assert "stops 2024-11-22" in partial["detail"].iloc[0]
    bars = pd.concat([_window(store)[OHLCV_COLUMNS], brought.bars], ignore_index=True)
    features = as_of_features(bars, brought.earnings, pd.Timestamp("2024-12-02"), 60, 126)
    assert list(features.rows["symbol"]) == ["AAA", "CCC"]
    assert features.skipped == {
        "BBB": "no bar on 2024-12-02 (last bar 2024-11-22): halted or delisted"
    }


def test_a_restated_past_bar_is_found_counted_and_the_stored_value_kept(cfg, store, calendar):
    now = at("2024-12-02 18:00")
    fetched, brought = _bring(cfg, store, calendar, RESTATED, "2024-12-02", now, "report")
    restated = brought.restated.reset_index(drop=True)
    assert brought.restated_symbols == ["AAA"]
    assert len(restated) == 1
    row = restated.iloc[0]
    assert (row["symbol"], pd.Timestamp(row["ts"]), row["column"]) == (
        "AAA",
        pd.Timestamp("2024-11-21"),
        "close",
    )
    assert (row["stored"], row["source"]) == (102.40, 102.55)
    # report: the new sessions are brought, the restated one is not (it is stored already)
    assert len(brought.bars) == 6 and brought.bars["ts"].min() == pd.Timestamp("2024-11-27")
    store.upsert("ohlcv", brought.bars.assign(source=fetched.source))
    kept = _window(store)
    assert _bar(kept, "AAA", "2024-11-21")["close"] == 102.40
    assert _bar(kept, "AAA", "2024-12-02")["close"] == 104.25
    with pytest.raises(
        RestatedBarsError,
        match=r"restated 1 value\(s\) of 1 stored bar\(s\) of 1 symbol\(s\) \(e\.g\. AAA "
        r"2024-11-21 close: stored 102\.4, now 102\.55\).*nothing was written",
    ):
        _bring(cfg, store, calendar, RESTATED, "2024-12-02", now, "refuse")


# --- the daily run end to end (no model: every symbol is skipped at scoring) ------------------


def _daily(cfg, store, calendar, client, **settings) -> DailyRun:
    unregistered = "not registered in this test"
    return DailyRun(
        replace(ForecastSettings.from_config(cfg), **settings),
        store,
        calendar,
        cfg.data,
        cfg.quality,
        Scorers(missing={"normal": unregistered, "earnings": unregistered}),
        yahoo_client=client,
    )


def test_run_day_downloads_from_the_overlap_to_the_target_day_in_session_then_after_close(
    cfg, store, calendar
):
    # 11:00: the newest closed session is 2024-11-29; the download runs from 5 sessions
    # before the newest stored bar (2024-11-26) through the target day, today
    now = at("2024-12-02 11:00")
    client = RecordedYahoo(IN_SESSION)
    run = _daily(cfg, store, calendar, client)
    [as_of] = plan_days(store, calendar, run.settings, "yfinance", now)
    assert as_of == pd.Timestamp("2024-11-29")
    day = run_day(run, as_of, now)
    [call] = client.calls
    assert (call["start"], call["end"]) == ("2024-11-19", "2024-12-03")
    assert call["tickers"] == SYMBOLS and call["auto_adjust"] is False
    assert day.target == pd.Timestamp("2024-12-02")
    assert day.metrics["forecast_unsettled_bars"] == 2.0
    assert day.metrics["forecast_new_bars"] == 4.0
    assert day.metrics["forecast_restated_bars"] == 0.0
    stored = _window(store)
    assert stored["ts"].max() == pd.Timestamp("2024-11-29")  # the partial bar is not stored
    assert HOLIDAY not in set(stored["ts"])
    assert "last bar 2024-11-22" in day.skipped["BBB"]
    # 18:00: the session has settled; the download starts 5 sessions before 2024-11-29
    now = at("2024-12-02 18:00")
    client = RecordedYahoo(CLOSED)
    run = replace(run, yahoo_client=client)
    [as_of] = plan_days(store, calendar, run.settings, "yfinance", now)
    day = run_day(run, as_of, now)
    [call] = client.calls
    assert (call["start"], call["end"]) == ("2024-11-21", "2024-12-04")
    assert day.metrics["forecast_new_bars"] == 2.0
    assert day.metrics["forecast_unsettled_bars"] == 0.0
    # the overlap (with the bars the 11:00 run stored) is unchanged: nothing restated
    assert day.metrics["forecast_restated_bars"] == 0.0
    stored = _window(store)
    assert _bar(stored, "AAA", "2024-12-02")["close"] == 104.25  # final, not 103.90
    assert _days(stored, "BBB")[-1] == pd.Timestamp("2024-11-22")
    assert day.skipped["BBB"] == "no bar on 2024-12-02 (last bar 2024-11-22): halted or delisted"
    history = store.read("feature_history")
    assert set(history.loc[pd.to_datetime(history["ts"]) == as_of, "symbol"]) == {"AAA", "CCC"}
    assert list(pd.to_datetime(store.read("forecast_runs")["as_of"])) == [
        pd.Timestamp("2024-11-29"),
        pd.Timestamp("2024-12-02"),
    ]


def test_run_day_keeps_the_stored_bar_or_refuses_on_a_restatement(cfg, store, calendar):
    now, as_of = at("2024-12-02 18:00"), pd.Timestamp("2024-12-02")
    before = store.count("ohlcv")
    refusing = _daily(cfg, store, calendar, RecordedYahoo(RESTATED), restated="refuse")
    with pytest.raises(ForecastRefused, match="AAA 2024-11-21 close.*nothing was written"):
        run_day(refusing, as_of, now)
    assert store.count("ohlcv") == before and store.count("forecast_runs") == 0
    day = run_day(_daily(cfg, store, calendar, RecordedYahoo(RESTATED)), as_of, now)
    assert day.metrics["forecast_restated_bars"] == 1.0
    assert day.update.restated_symbols == ["AAA"]
    assert store.count("ohlcv") == before + 6
    assert _bar(_window(store), "AAA", "2024-11-21")["close"] == 102.40

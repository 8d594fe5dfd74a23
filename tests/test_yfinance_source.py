"""The yfinance source, replaying recorded yfinance responses (tests/fixtures/yfinance)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nextday.data.schema import EARNINGS_COLUMNS, OHLCV_COLUMNS, DataSourceError
from nextday.data.yahoo import Download, fetch_yfinance, read_symbols_file

FIXTURES = Path(__file__).parent / "fixtures" / "yfinance"
START, END = "2024-01-02", "2024-02-14"


def recorded_download() -> pd.DataFrame:
    frame = pd.read_csv(FIXTURES / "download.csv", header=[0, 1], index_col=0)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index), name="Date")
    frame.columns = frame.columns.set_names(["Ticker", "Price"])
    return frame


def recorded_earnings(symbol: str) -> pd.DataFrame | None:
    path = FIXTURES / f"earnings_{symbol}.csv"
    if not path.exists():
        return None  # what yfinance returns when Yahoo has no earnings table
    frame = pd.read_csv(path)
    stamps = pd.to_datetime(frame.pop("Earnings Date"), utc=True).dt.tz_convert("America/New_York")
    return frame.set_index(pd.DatetimeIndex(stamps, name="Earnings Date"))


class FakeYahoo:
    """Stands in for the yfinance module: replays the fixtures, and fails when told to.

    `fail_first` download calls raise; batches holding a symbol of `broken` always raise;
    symbols in `earnings_broken` raise on every earnings call, and those in `no_earnings` get
    None, as when Yahoo has no earnings table.
    """

    def __init__(
        self,
        fail_first: int = 0,
        broken=(),
        earnings_broken=(),
        no_earnings=(),
        empty=(),
        delisted=None,
    ):
        self.fail_first = fail_first
        self.empty = set(empty)
        self.delisted = dict(delisted or {})
        self.no_earnings = set(no_earnings)
        self.broken = set(broken)
        self.earnings_broken = set(earnings_broken)
        self.download_calls: list[list[str]] = []
        self.download_kwargs: list[dict] = []
        self.earnings_calls: list[tuple[str, int]] = []

    def download(self, tickers, **kwargs):
        self.download_calls.append(list(tickers))
        self.download_kwargs.append(kwargs)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("Too Many Requests. Rate limited. Try after a while.")
        if self.broken & set(tickers):
            raise ConnectionError("HTTP 503")
        if set(tickers) <= self.empty:  # yfinance's answer when no ticker of the call has data
            return pd.DataFrame()
        recorded = recorded_download()
        present = set(recorded.columns.get_level_values(0))
        blocks = {}
        for ticker in tickers:
            if ticker in present:
                blocks[ticker] = recorded[ticker]
            else:  # yfinance's answer for a ticker it could not fetch: all NaN
                blocks[ticker] = recorded["ZZZ"] * np.nan
        for ticker, last_day in self.delisted.items():  # no bars after the delisting
            if ticker in blocks:
                block = blocks[ticker].copy()
                block.loc[block.index > pd.Timestamp(last_day)] = np.nan
                blocks[ticker] = block
        return pd.concat(blocks, axis=1, names=["Ticker", "Price"])

    def Ticker(self, symbol):  # mirrors yfinance.Ticker
        fake = self

        class _Ticker:
            def get_earnings_dates(self, limit=12):
                fake.earnings_calls.append((symbol, limit))
                if symbol in fake.earnings_broken:
                    raise ConnectionError("HTTP 404")
                if symbol in fake.no_earnings:
                    return None
                return recorded_earnings(symbol)

        return _Ticker()


def fetch(client, symbols=("AAA", "BBB", "ZZZ"), sleeps=None, **kwargs):
    sleeps = [] if sleeps is None else sleeps
    settings = Download(**kwargs)
    return fetch_yfinance(list(symbols), START, END, settings, client=client, sleep=sleeps.append)


def test_fixture_parses_into_the_raw_market_shape():
    client = FakeYahoo()
    market = fetch(client)
    ohlcv, earnings = market.ohlcv, market.earnings
    assert market.source == "yfinance"
    assert list(ohlcv.columns) == OHLCV_COLUMNS
    assert list(earnings.columns) == EARNINGS_COLUMNS
    assert ohlcv["ts"].dtype == "datetime64[ns]"
    assert all(ohlcv[c].dtype == "float64" for c in ["open", "high", "low", "close", "volume"])
    assert set(ohlcv["symbol"]) == {"AAA", "BBB"}
    assert ohlcv.equals(ohlcv.sort_values(["symbol", "ts"]).reset_index(drop=True))
    assert (ohlcv["ts"] == ohlcv["ts"].dt.normalize()).all()
    # 30 trading days; BBB's all-NaN row on its halted day is not a bar
    assert ohlcv.groupby("symbol").size().to_dict() == {"AAA": 30, "BBB": 29}
    assert pd.Timestamp("2024-01-10") not in set(ohlcv.loc[ohlcv["symbol"] == "BBB", "ts"])
    # the download was asked for unadjusted prices in ticker groups
    assert client.download_kwargs[0]["group_by"] == "ticker"
    assert client.download_kwargs[0]["auto_adjust"] is False


def test_close_is_close_not_adj_close():
    market = fetch(FakeYahoo())
    recorded = recorded_download()["AAA"]
    bars = market.ohlcv[market.ohlcv["symbol"] == "AAA"].set_index("ts")
    first = pd.Timestamp("2024-01-02")
    assert bars.loc[first, "close"] == recorded.loc[first, "Close"]
    assert bars.loc[first, "close"] != recorded.loc[first, "Adj Close"]
    assert bars.loc[first, "volume"] == recorded.loc[first, "Volume"]


def test_earnings_timing_time_zone_and_session_dates():
    market = fetch(FakeYahoo())
    earnings = market.earnings
    assert earnings["ts"].dtype == "datetime64[ns]"
    assert earnings["session_date"].dtype == "datetime64[ns]"
    # upcoming reports (no reported EPS) and reports before the first bar are gone
    rows = earnings.set_index("symbol")
    assert len(earnings) == 2
    aaa, bbb = rows.loc["AAA"], rows.loc["BBB"]
    # exchange-local wall time, not UTC (16:05 EST is 21:05 UTC)
    assert aaa["ts"] == pd.Timestamp("2024-01-25 16:05")
    assert aaa["timing"] == "amc"
    assert aaa["session_date"] == pd.Timestamp("2024-01-25")
    assert bbb["ts"] == pd.Timestamp("2024-02-01 06:30")
    assert bbb["timing"] == "bmo"
    assert bbb["session_date"] == pd.Timestamp("2024-01-31")
    assert aaa["eps_estimate"] == 1.95 and aaa["eps_actual"] == 2.05
    assert np.isnan(aaa["revenue_actual"]) and np.isnan(bbb["gross_margin"])


def test_reports_after_the_last_bar_are_dropped():
    """With `end` before a report, the session rule must not pin it onto the last bar."""
    client = FakeYahoo()
    real_download = client.download
    client.download = lambda tickers, **kw: real_download(tickers, **kw).loc[:"2024-01-26"]
    earnings = fetch(client).earnings
    assert list(earnings["symbol"]) == ["AAA"]  # AAA reported 2024-01-25, BBB on 2024-02-01
    assert earnings.loc[0, "session_date"] == pd.Timestamp("2024-01-25")


def test_rows_without_reported_eps_are_dropped():
    """Yahoo's upcoming reports have no reported EPS, even when dated inside the bars."""
    client = FakeYahoo()
    upcoming = recorded_earnings("BBB").copy()
    upcoming.index = upcoming.index.where(
        upcoming["Reported EPS"].notna(), pd.Timestamp("2024-02-08 06:30", tz="America/New_York")
    )
    client.Ticker = lambda symbol: SimpleNamespace(get_earnings_dates=lambda limit: upcoming)
    earnings = fetch(client, symbols=["BBB"]).earnings
    assert list(earnings["ts"]) == [pd.Timestamp("2024-02-01 06:30")]


def test_all_nan_symbol_is_reported_failed_and_the_rest_load():
    market = fetch(FakeYahoo())
    assert "ZZZ: no data returned" in market.notes
    assert "ZZZ" not in set(market.ohlcv["symbol"])
    assert not any(note.startswith(("AAA:", "BBB:")) for note in market.notes)


def test_download_retries_with_exponential_back_off():
    client = FakeYahoo(fail_first=2)
    sleeps: list[float] = []
    market = fetch(client, sleeps=sleeps, backoff_seconds=2.0, max_retries=4)
    assert sleeps == [2.0, 4.0]
    assert len(client.download_calls) == 3
    assert set(market.ohlcv["symbol"]) == {"AAA", "BBB"}


def test_batch_that_keeps_failing_marks_its_symbols_failed():
    client = FakeYahoo(broken={"ZZZ"})
    sleeps: list[float] = []
    market = fetch(
        client, symbols=["BBB", "ZZZ", "AAA"], sleeps=sleeps, batch_size=2, max_retries=4
    )
    assert client.download_calls == [["BBB", "ZZZ"]] * 4 + [["AAA"]]
    assert sleeps == [2.0, 4.0, 8.0]  # four tries of the broken batch, no sleep after the last
    failed = {note.split(":")[0]: note for note in market.notes}
    assert set(failed) == {"BBB", "ZZZ"}
    assert "download failed" in failed["BBB"] and "HTTP 503" in failed["ZZZ"]
    assert set(market.ohlcv["symbol"]) == {"AAA"}


def test_batch_answered_with_an_empty_frame_is_failed():
    """yfinance returns a frame with no rows when every ticker of the call failed."""
    client = FakeYahoo()
    real_download = client.download
    client.download = lambda tickers, **kw: real_download(tickers, **kw).iloc[:0]
    with pytest.raises(DataSourceError, match="AAA: no data returned"):
        fetch(client, symbols=["AAA"])


def test_failing_batch_does_not_stop_other_batches():
    client = FakeYahoo(broken={"ZZZ"})
    market = fetch(client, symbols=["ZZZ", "AAA", "BBB"], batch_size=1, max_retries=2)
    assert set(market.ohlcv["symbol"]) == {"AAA", "BBB"}
    assert any(note.startswith("ZZZ: download failed") for note in market.notes)


def test_all_symbols_failed_raises_listing_them():
    with pytest.raises(DataSourceError, match="ZZZ") as caught:
        fetch(FakeYahoo(broken={"AAA"}), symbols=["AAA", "ZZZ"], max_retries=1)
    assert "AAA" in str(caught.value)


def test_earnings_failure_is_noted_but_keeps_the_symbol():
    client = FakeYahoo(earnings_broken={"AAA"})
    sleeps: list[float] = []
    market = fetch(client, sleeps=sleeps, max_retries=2, backoff_seconds=1.0, earnings_limit=12)
    assert "AAA" in set(market.ohlcv["symbol"])
    assert set(market.earnings["symbol"]) == {"BBB"}
    assert any(note.startswith("earnings of AAA: not loaded") for note in market.notes)
    assert sleeps == [1.0]
    assert ("BBB", 12) in client.earnings_calls


def test_symbol_without_earnings_table_gets_a_note():
    client = FakeYahoo(no_earnings={"BBB"})
    market = fetch(client, symbols=["AAA", "BBB", "CCC"])
    assert "earnings of BBB: Yahoo has no reported earnings" in market.notes
    assert set(market.earnings["symbol"]) == {"AAA"}
    # CCC has no bars (all NaN), so its earnings are never asked for
    assert {symbol for symbol, _ in client.earnings_calls} == {"AAA", "BBB"}
    assert "CCC: no data returned" in market.notes


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_fixture_is_what_yfinance_download_assembles(monkeypatch):
    """The recorded frame matches yfinance's own assembly of per-ticker histories."""
    multi = pytest.importorskip("yfinance.multi")
    if not hasattr(multi, "Ticker"):
        pytest.skip("yfinance internals changed")
    recorded = recorded_download()

    class HistoryOnly:
        def __init__(self, ticker, session=None):
            self.ticker, self._price_history = ticker, None

        def history(self, **kwargs):
            if self.ticker == "ZZZ":
                raise RuntimeError("possibly delisted; no price data found")
            frame = recorded[self.ticker].dropna(how="all").copy()
            frame["Volume"] = frame["Volume"].astype(np.int64)
            frame.index = frame.index.tz_localize("America/New_York")
            return frame

    monkeypatch.setattr(multi, "Ticker", HistoryOnly)
    import yfinance

    real = SimpleNamespace(download=yfinance.download, Ticker=FakeYahoo().Ticker)
    via_yfinance = fetch(real)
    via_fixture = fetch(FakeYahoo())
    pd.testing.assert_frame_equal(via_yfinance.ohlcv, via_fixture.ohlcv)
    assert via_yfinance.notes == via_fixture.notes


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_earnings_page_through_yfinance_scraper():
    """yfinance's own scraper output (hour precision, EST/EDT) parses to the right timing."""
    yfinance = pytest.importorskip("yfinance")
    page = (FIXTURES / "earnings_page_AAA.html").read_text()

    class Page:
        def cache_get(self, url, *args, **kwargs):
            return SimpleNamespace(text=page)

    def ticker(symbol):
        real = yfinance.Ticker(symbol)
        real._data = Page()
        return real

    client = SimpleNamespace(download=FakeYahoo().download, Ticker=ticker)
    try:
        market = fetch(client, symbols=["AAA"])
    except AttributeError:  # pragma: no cover - yfinance internals changed
        pytest.skip("yfinance scraper internals changed")
    earnings = market.earnings.set_index("ts")
    assert list(earnings.index) == [
        pd.Timestamp("2024-01-12 06:00"),
        pd.Timestamp("2024-01-25 16:00"),
    ]
    assert list(earnings["timing"]) == ["bmo", "amc"]
    assert list(earnings["session_date"]) == [
        pd.Timestamp("2024-01-11"),
        pd.Timestamp("2024-01-25"),
    ]
    assert list(earnings["eps_actual"]) == [1.62, 2.05]


def test_read_symbols_file(tmp_path):
    path = tmp_path / "symbols.txt"
    path.write_text("# my list\naapl\n\n  MSFT  # software\nAAPL\nbrk-b\n   \n")
    assert read_symbols_file(str(path)) == ["AAPL", "MSFT", "BRK-B"]


def test_symbol_whose_download_is_empty_is_failed_and_the_others_load():
    client = FakeYahoo(empty={"BBB"})
    market = fetch(client, symbols=["AAA", "BBB"], batch_size=1)
    assert client.download_calls == [["AAA"], ["BBB"]]
    assert "BBB: no data returned" in market.notes
    assert set(market.ohlcv["symbol"]) == {"AAA"}


def test_delisted_symbol_keeps_its_history_and_is_reported_as_partial():
    from omegaconf import OmegaConf

    from nextday.config import compose
    from nextday.data.quality import validate

    market = fetch(FakeYahoo(delisted={"BBB": "2024-01-25"}), symbols=["AAA", "BBB"])
    bbb = market.ohlcv[market.ohlcv["symbol"] == "BBB"]
    assert bbb["ts"].max() == pd.Timestamp("2024-01-25")  # its bars up to the delisting
    assert not any(note.startswith("BBB:") for note in market.notes)
    cfg = compose([]).quality
    OmegaConf.update(cfg, "min_rows_per_symbol", 5)
    clean, report = validate(market, cfg)
    partial = report.problems[report.problems["kind"] == "partial_history"]
    assert list(partial["symbol"]) == ["BBB"]
    assert "stops 2024-01-25" in partial["detail"].iloc[0]
    # not filled: BBB keeps exactly the bars it had
    assert len(clean.ohlcv[clean.ohlcv["symbol"] == "BBB"]) == len(bbb)

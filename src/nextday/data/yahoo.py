"""Daily bars and earnings dates from Yahoo Finance through the `yfinance` package.

Yahoo is flaky: calls fail at random and rate limits come and go. Every call is retried with
exponential back-off, and a symbol that still cannot be had is left out and reported in
`RawMarket.notes` ("SYMBOL: reason") rather than failing the whole run. Only when no symbol
at all could be loaded is that an error.

Shapes, as yfinance 1.x returns them: `download(group_by="ticker")` gives one frame with
(Ticker, Price) columns over the union of all tickers' dates, so a ticker that failed is all
NaN and a ticker that did not trade on some date has an all-NaN row there; tickers come in
no particular order. `Ticker.get_earnings_dates` gives a frame indexed by a tz-aware
"Earnings Date" (America/New_York, to the hour only as Yahoo's page shows it), newest first,
with "EPS Estimate", "Reported EPS" and "Surprise(%)"; upcoming reports have no reported EPS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from nextday.data.schema import (
    EARNINGS_COLUMNS,
    EARNINGS_VALUE_COLUMNS,
    EXCHANGE_TZ,
    OHLCV_COLUMNS,
    TIMINGS,
    DataSourceError,
    RawMarket,
    assign_session_dates,
    empty_earnings,
    infer_timing,
)

logger = logging.getLogger(__name__)

# yfinance's price names -> ours; Close, not Adj Close: the dividend adjustment of Adj Close
# is recomputed backwards whenever a dividend is paid, so it would change past returns.
PRICE_NAMES = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
EARNINGS_NAMES = {"EPS Estimate": "eps_estimate", "Reported EPS": "eps_actual"}
YAHOO_EARNINGS_CAP = 100  # get_earnings_dates raises above this

T = TypeVar("T")


def read_symbols_file(path: str) -> list[str]:
    """Symbols from a file with one per line; blank lines and '#' comments are skipped."""
    symbols: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            symbol = line.split("#", 1)[0].strip().upper()
            if symbol and symbol not in symbols:
                symbols.append(symbol)
    return symbols


@dataclass(frozen=True)
class Download:
    """How to download (the yfinance data group): batches, retries and the earnings calendar."""

    batch_size: int = 20
    max_retries: int = 4
    backoff_seconds: float = 2.0
    earnings_limit: int = 40
    default_timing: str = "amc"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_retries < 1:
            raise DataSourceError("yfinance: batch_size and max_retries must be at least 1")
        if not 1 <= self.earnings_limit <= YAHOO_EARNINGS_CAP:
            raise DataSourceError(
                f"yfinance: earnings_limit must be between 1 and {YAHOO_EARNINGS_CAP} (Yahoo's "
                f"cap), not {self.earnings_limit}"
            )
        if self.default_timing not in TIMINGS:
            raise DataSourceError(f"default_timing {self.default_timing!r} is not one of {TIMINGS}")


def fetch_yfinance(
    symbols: list[str],
    start: str,
    end: str | None,
    settings: Download | None = None,
    *,
    client: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    bmo_through: pd.Timestamp | None = None,
) -> RawMarket:
    """Download daily bars from `start` to `end` (exclusive) and past earnings of `symbols`
    (`bmo_through`: see `assign_session_dates`).

    `client` is the yfinance module unless a test passes a stand-in; `sleep` is injectable so
    tests can record the back-off without waiting.
    """
    settings = settings or Download()
    if client is None:
        import yfinance  # imported here: only this source needs it

        client = yfinance
    wanted = _unique_upper(symbols)
    if not wanted:
        raise DataSourceError("yfinance: no symbols were given")

    def retry(call: Callable[[], T], what: str) -> T:
        return _with_retry(call, what, settings.max_retries, settings.backoff_seconds, sleep)

    bars, failed = _download_all(client, wanted, start, end, settings.batch_size, retry)
    if failed:
        logger.warning("yfinance: %d of %d symbols failed: %s", len(failed), len(wanted), failed)
    if not bars:
        listing = "; ".join(f"{symbol}: {reason}" for symbol, reason in failed.items())
        raise DataSourceError(f"yfinance: no symbol could be loaded ({listing})")
    ohlcv = pd.concat(bars, ignore_index=True).sort_values(["symbol", "ts"], kind="stable")
    ohlcv = ohlcv.reset_index(drop=True)[OHLCV_COLUMNS]
    notes = [f"{symbol}: {reason}" for symbol, reason in failed.items()]
    listed = list(ohlcv["symbol"].unique())
    reports = _fetch_earnings(client, listed, settings.earnings_limit, retry, notes)
    earnings = _finish_earnings(reports, ohlcv, settings.default_timing, bmo_through)
    return RawMarket(ohlcv=ohlcv, earnings=earnings, source="yfinance", notes=notes)


def _download_all(
    client: Any,
    symbols: list[str],
    start: str,
    end: str | None,
    batch_size: int,
    retry: Callable[[Callable[[], Any], str], Any],
) -> tuple[list[pd.DataFrame], dict[str, str]]:
    """Bars per loaded symbol, and {symbol: reason} for those that failed, batch by batch."""
    bars: list[pd.DataFrame] = []
    failed: dict[str, str] = {}
    for first in range(0, len(symbols), batch_size):
        batch = symbols[first : first + batch_size]
        try:
            frame = retry(partial(_download, client, batch, start, end), "download")
        except Exception as error:  # whatever broke the batch, its symbols are reported
            failed.update({symbol: f"download failed: {_describe(error)}" for symbol in batch})
            continue
        loaded, missing = _parse_download(frame, batch)
        bars.extend(loaded)
        failed.update(missing)
    return bars, failed


def _fetch_earnings(
    client: Any,
    symbols: list[str],
    limit: int,
    retry: Callable[[Callable[[], Any], str], Any],
    notes: list[str],
) -> list[pd.DataFrame]:
    """Earnings dates per symbol; a symbol without them keeps its bars and gets a note.

    The notes start "earnings of SYMBOL:" so they cannot be mistaken for failed symbols.
    """
    reports: list[pd.DataFrame] = []
    for symbol in symbols:
        try:
            raw = retry(
                partial(_earnings_dates, client, symbol, limit),
                f"earnings of {symbol}",
            )
        except Exception as error:  # bars stay usable without earnings
            notes.append(f"earnings of {symbol}: not loaded: {_describe(error)}")
            continue
        parsed = _parse_earnings(raw, symbol)
        if parsed.empty:
            notes.append(f"earnings of {symbol}: Yahoo has no reported earnings")
        else:
            reports.append(parsed)
    return reports


def _earnings_dates(client: Any, symbol: str, limit: int) -> pd.DataFrame:
    return client.Ticker(symbol).get_earnings_dates(limit=limit)


def _unique_upper(symbols: list[str]) -> list[str]:
    """Stripped, upper-cased, de-duplicated in order (yfinance upper-cases tickers itself)."""
    out: list[str] = []
    for symbol in symbols:
        symbol = str(symbol).strip().upper()
        if symbol and symbol not in out:
            out.append(symbol)
    return out


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _with_retry(
    call: Callable[[], T],
    what: str,
    max_retries: int,
    backoff_seconds: float,
    sleep: Callable[[float], None],
) -> T:
    """Run `call` up to `max_retries` times, sleeping backoff * 2**attempt between tries."""
    for attempt in range(max_retries):
        try:
            return call()
        except Exception as error:
            if attempt == max_retries - 1:
                raise
            wait = backoff_seconds * 2**attempt
            logger.info(
                "yfinance: %s failed (%s), try %d of %d, again in %.1f s",
                what,
                _describe(error),
                attempt + 1,
                max_retries,
                wait,
            )
            sleep(wait)
    raise AssertionError("unreachable: max_retries >= 1")


def _download(client: Any, batch: list[str], start: str, end: str | None) -> pd.DataFrame:
    return client.download(
        tickers=batch,
        start=start,
        end=end,
        group_by="ticker",
        auto_adjust=False,
        actions=False,
        threads=False,
        progress=False,
    )


def _parse_download(
    frame: pd.DataFrame | None, batch: list[str]
) -> tuple[list[pd.DataFrame], dict[str, str]]:
    """Split a download frame into one OHLCV frame per symbol, and the symbols that failed."""
    if frame is None or frame.empty:
        return [], dict.fromkeys(batch, "no data returned")
    columns = frame.columns
    if not isinstance(columns, pd.MultiIndex):
        # A single ticker without a ticker level (multi_level_index=False): only one batch
        # member can own it.
        if len(batch) != 1:
            return [], dict.fromkeys(batch, "response without a ticker level")
        frame = pd.concat({batch[0]: frame}, axis=1)
        columns = frame.columns
    # group_by="ticker" puts the ticker first; accept the other order too.
    ticker_level = 0 if set(PRICE_NAMES) & set(columns.get_level_values(1)) else 1
    present = {str(name).upper(): name for name in columns.get_level_values(ticker_level)}
    loaded: list[pd.DataFrame] = []
    failed: dict[str, str] = {}
    for symbol in batch:
        if symbol not in present:
            failed[symbol] = "not in the response"
            continue
        block = frame.xs(present[symbol], axis=1, level=ticker_level)
        absent = [name for name in PRICE_NAMES if name not in block.columns]
        if absent:
            failed[symbol] = f"response lacks column(s) {', '.join(absent)}"
            continue
        bars = _symbol_bars(block, symbol)
        if bars.empty:
            failed[symbol] = "no data returned"
        else:
            loaded.append(bars)
    return loaded, failed


def _symbol_bars(block: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """One symbol's columns as OHLCV rows; all-NaN rows are dates it did not trade."""
    values = block[list(PRICE_NAMES)].apply(pd.to_numeric, errors="coerce").astype("float64")
    values = values.rename(columns=PRICE_NAMES).dropna(how="all")
    index = pd.DatetimeIndex(values.index)
    if index.tz is not None:
        # the bar's date is its exchange-local date, which tz_localize(None) keeps
        index = index.tz_localize(None)
    values.index = index.normalize().astype("datetime64[ns]")
    values = values[~values.index.duplicated(keep="last")]
    values.insert(0, "symbol", symbol)
    return values.rename_axis("ts").reset_index()[OHLCV_COLUMNS]


def _parse_earnings(raw: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    """One symbol's reported earnings: symbol, ts (exchange-local, naive) and EPS columns.

    Rows without a reported EPS are Yahoo's upcoming reports, and are dropped.
    """
    columns = ["symbol", "ts", *EARNINGS_NAMES.values()]
    if raw is None or len(raw) == 0:
        return pd.DataFrame(columns=columns)
    frame = raw.reset_index()
    date_column = "Earnings Date" if "Earnings Date" in frame.columns else frame.columns[0]
    out = pd.DataFrame({"symbol": symbol, "ts": _exchange_time(frame[date_column])})
    for theirs, ours in EARNINGS_NAMES.items():
        source = frame[theirs] if theirs in frame.columns else np.nan
        out[ours] = pd.to_numeric(source, errors="coerce")
    return out.dropna(subset=["ts", "eps_actual"])[columns].reset_index(drop=True)


def _exchange_time(stamps: pd.Series) -> pd.Series:
    """Exchange-local naive datetime64[ns] from tz-aware, naive (taken as local) or mixed stamps."""
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        local = stamps.dt.tz_convert(EXCHANGE_TZ)
    elif pd.api.types.is_datetime64_dtype(stamps):
        return stamps.astype("datetime64[ns]")
    else:
        # strings with offsets, or Timestamps in several zones
        local = pd.to_datetime(stamps, utc=True, errors="coerce").dt.tz_convert(EXCHANGE_TZ)
    return local.dt.tz_localize(None).astype("datetime64[ns]")


def _finish_earnings(
    reports: list[pd.DataFrame],
    ohlcv: pd.DataFrame,
    default_timing: str,
    bmo_through: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """All reports in EARNINGS_COLUMNS with timing and session date (see assign_session_dates:
    reports dated after a symbol's last bar, beyond `end`, are dropped there)."""
    if not reports:
        return empty_earnings()
    frame = pd.concat(reports, ignore_index=True)
    frame = frame.drop_duplicates(["symbol", "ts"], keep="first")
    if frame.empty:
        return empty_earnings()
    frame["timing"] = infer_timing(frame["ts"], default_timing).astype(str)
    frame["session_date"] = pd.NaT
    for column in EARNINGS_VALUE_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
        frame[column] = frame[column].astype("float64")
    frame = assign_session_dates(frame[EARNINGS_COLUMNS], ohlcv, bmo_through)
    frame["session_date"] = frame["session_date"].astype("datetime64[ns]")
    return frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)

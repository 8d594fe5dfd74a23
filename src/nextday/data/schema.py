"""The shape of raw market data as every source delivers it, and the calendar rules shared by all.

Every source returns a `RawMarket`: `ohlcv` with one row per symbol and trading date, and
`earnings` with one row per report. Times are exchange-local and timezone-naive; `ts` of a bar
is its date at midnight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

OHLCV_COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close"]

# `ts` is the announcement time; `session_date` the trading date t whose close precedes the
# report, i.e. the first date whose features may use it. The report's sample (t -> t+1) is an
# earnings sample when the report lands between close t and open t+1 (timing amc or bmo).
EARNINGS_COLUMNS = [
    "symbol",
    "ts",
    "session_date",
    "timing",
    "eps_estimate",
    "eps_actual",
    "revenue_estimate",
    "revenue_actual",
    "gross_margin",
    "operating_margin",
]
EARNINGS_VALUE_COLUMNS = EARNINGS_COLUMNS[4:]
TIMINGS = ("amc", "bmo", "intraday")

# report times are exchange-local (New York), timezone-naive
EXCHANGE_TZ = "America/New_York"
MARKET_OPEN_HOUR = 9.5
MARKET_CLOSE_HOUR = 16.0


@dataclass
class RawMarket:
    """Raw data from one source, plus what only the synthetic market knows.

    `truth` (synthetic only) holds the conditional mean and scale of each next-day return,
    `true_mean` and `true_scale` per (symbol, ts): the oracle, kept apart from the features.
    `regimes` (synthetic only) holds the generator's market regime per date. `symbols` holds
    per-symbol metadata such as `sector` where the source knows it.
    """

    ohlcv: pd.DataFrame
    earnings: pd.DataFrame
    source: str
    truth: pd.DataFrame | None = None
    regimes: pd.DataFrame | None = None
    symbols: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def empty_earnings() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype=float) for column in EARNINGS_COLUMNS})
    frame["symbol"] = frame["symbol"].astype(object)
    frame["timing"] = frame["timing"].astype(object)
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["session_date"] = pd.to_datetime(frame["session_date"])
    return frame


def infer_timing(ts: pd.Series, default: str = "amc") -> pd.Series:
    """amc after the close, bmo before the open, intraday between; `default` for date-only stamps.

    A stamp at exactly midnight carries no time of day, so the default applies. `amc` is the
    safe default: it never lets a report reach features before it was public.
    """
    ts = pd.to_datetime(ts)
    hours = ts.dt.hour + ts.dt.minute / 60.0
    midnight = (ts.dt.hour == 0) & (ts.dt.minute == 0) & (ts.dt.second == 0)
    timing = np.where(
        hours >= MARKET_CLOSE_HOUR, "amc", np.where(hours < MARKET_OPEN_HOUR, "bmo", "intraday")
    )
    return pd.Series(np.where(midnight, default, timing), index=ts.index, dtype=object)


def assign_session_dates(
    earnings: pd.DataFrame, ohlcv: pd.DataFrame, bmo_through: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Set `session_date`: the symbol's trading date whose close last precedes the report.

    amc and intraday reports on date D belong to D (or the last trading date before D if D
    had no bar); bmo reports belong to the last trading date strictly before D. Reports of
    symbols without bars, before a symbol's first bar, or dated after its last bar are
    dropped: the rule would pin a later report onto the last bar and leak it into features.
    `bmo_through`, the session after the last bar where a calendar says which it is (the
    daily run's target), keeps a bmo report of that day: it belongs to the last bar.
    """
    if earnings.empty:
        return earnings.assign(session_date=pd.Series(dtype="datetime64[ns]"))
    report_day = pd.to_datetime(earnings["ts"]).dt.normalize()
    # bmo: known before the open of D, so its session is the previous trading date: look up
    # the last bar strictly before D by searching for D minus one nanosecond.
    lookup = report_day.where(earnings["timing"].ne("bmo"), report_day - pd.Timedelta(1, "ns"))
    out = earnings.copy()
    out["session_date"] = pd.NaT
    bars = ohlcv[["symbol", "ts"]].sort_values(["symbol", "ts"])
    for symbol, dates in bars.groupby("symbol", sort=False)["ts"]:
        mask = (out["symbol"] == symbol).to_numpy()
        if not mask.any():
            continue
        days = dates.to_numpy(dtype="datetime64[ns]")
        wanted = lookup[mask].to_numpy(dtype="datetime64[ns]")
        position = np.searchsorted(days, wanted, side="right") - 1
        session = np.where(position >= 0, days[np.clip(position, 0, None)], np.datetime64("NaT"))
        out.loc[mask, "session_date"] = session
    out["session_date"] = pd.to_datetime(out["session_date"])
    last_bar = out["symbol"].map(bars.groupby("symbol")["ts"].max())
    known = report_day.to_numpy() <= last_bar.to_numpy()
    if bmo_through is not None:
        next_open = (out["timing"] == "bmo") & (report_day == pd.Timestamp(bmo_through))
        known |= next_open.to_numpy() & (last_bar.to_numpy() < np.datetime64(bmo_through))
    out = out[known]
    return out.dropna(subset=["session_date"]).reset_index(drop=True)


class DataSourceError(ValueError):
    """Raw data that cannot be read as it stands; the message names the file, row or column."""

"""New bars into the store: only sessions after the newest stored bar, checked as prepare
checks its bars, with the overlap compared against what is stored.

- A bar of a session that has not closed yet (a run during trading hours: a partial bar), or
  of a session after the as-of day, is never used: counted as `unsettled`.
- A bar on a day the calendar has no session for is dropped and counted (`off_calendar`).
- Overlap: the source's bars for sessions already stored are compared with the store. A
  changed bar (a vendor restatement, or a split adjusted afterwards, which rescales every
  earlier bar) is counted and named, and the stored history is kept: the new bars are
  written, the changed ones not (`restated: report`), or the run stops (`refuse`). Mixing a
  re-adjusted tail into an unadjusted history would plant a false jump, so the way to take a
  restatement is to re-run prepare, which the run recommends.
- A symbol without bars in the stored window is not taken up (it enters the store with
  prepare, which reads its whole history): skipped, named.
- Quality: the new bars are validated with prepare's `validate` and policies, together with
  the stored window before them (jumps, gaps and stale runs need the bars before); a symbol
  that validation drops is skipped, named; a `fail` policy refuses the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nextday.config_schema import CHOICES
from nextday.daily.calendar import TradingCalendar
from nextday.data.quality import QualityReport, validate
from nextday.data.schema import OHLCV_COLUMNS, PRICE_COLUMNS, RawMarket

RESTATED_POLICIES = CHOICES["forecast.restated"]
# a stored price and the source's differ when they differ by more than this, relatively
# (vendors round prices to 1e-4 or finer; volume is compared exactly)
PRICE_RTOL = 1e-6


class RestatedBarsError(ValueError):
    """The source restated stored bars under `forecast.restated=refuse`."""


@dataclass
class Update:
    """What the source brought for the daily run, before anything is written."""

    bars: pd.DataFrame  # new bars to store (OHLCV_COLUMNS), sessions after the stored ones
    earnings: pd.DataFrame  # reports to store
    restated: pd.DataFrame  # symbol, ts, column, stored, source: stored bars given otherwise
    unsettled: int  # bars of sessions not closed at the run (or after the as-of day)
    off_calendar: int  # bars on days that are no session of the calendar
    quality: QualityReport | None  # prepare's checks over the window and the new bars
    skipped: dict[str, str] = field(default_factory=dict)  # symbol -> why validation dropped it

    @property
    def restated_symbols(self) -> list[str]:
        return sorted(self.restated["symbol"].unique()) if len(self.restated) else []

    def new_problems(self) -> pd.DataFrame:
        """The quality problems found on the new bars."""
        if self.quality is None or self.quality.problems.empty:
            return pd.DataFrame(columns=["kind", "symbol", "ts", "detail", "action"])
        problems = self.quality.problems
        new = pd.MultiIndex.from_frame(self.bars[["symbol", "ts"]])
        at = pd.MultiIndex.from_arrays([problems["symbol"], pd.to_datetime(problems["ts"])])
        return problems[at.isin(new)]


def settled(
    bars: pd.DataFrame, calendar: TradingCalendar, as_of: pd.Timestamp, now: pd.Timestamp
) -> tuple[pd.DataFrame, int, int]:
    """The bars that may be used for an as-of run at `now`: sessions of the calendar, up to
    `as_of`, closed by `now`; and how many were unsettled and off the calendar."""
    days = pd.to_datetime(bars["ts"]).dt.normalize()
    if days.empty:
        return bars, 0, 0
    sessions = calendar.sessions(days.min(), days.max())
    on_calendar = days.isin(sessions)
    closed = {day: calendar.close_time(day) <= now for day in days[on_calendar].unique()}
    usable = on_calendar & (days <= as_of) & days.map(closed).fillna(False).astype(bool)
    unsettled = int((on_calendar & ~usable).sum())
    return bars[usable.to_numpy()].assign(ts=days[usable]), unsettled, int((~on_calendar).sum())


def restatements(stored: pd.DataFrame, fetched: pd.DataFrame) -> pd.DataFrame:
    """The source's bars for stored sessions that differ from the stored ones: one row per
    bar and column (symbol, ts, column, stored, source)."""
    columns = [*PRICE_COLUMNS, "volume"]
    both = stored[["symbol", "ts", *columns]].merge(
        fetched[["symbol", "ts", *columns]], on=["symbol", "ts"], suffixes=("_stored", "_source")
    )
    found = []
    for column in columns:
        old, new = (
            both[f"{column}_stored"].to_numpy(float),
            both[f"{column}_source"].to_numpy(float),
        )
        tolerance = 0.0 if column == "volume" else PRICE_RTOL * np.abs(old)
        differs = (np.abs(new - old) > tolerance) | (np.isnan(old) != np.isnan(new))
        if differs.any():
            found.append(
                pd.DataFrame(
                    {
                        "symbol": both.loc[differs, "symbol"].to_numpy(),
                        "ts": both.loc[differs, "ts"].to_numpy(),
                        "column": column,
                        "stored": old[differs],
                        "source": new[differs],
                    }
                )
            )
    if not found:
        return pd.DataFrame(columns=["symbol", "ts", "column", "stored", "source"])
    return pd.concat(found, ignore_index=True).sort_values(["symbol", "ts", "column"])


def update(
    stored: pd.DataFrame,
    fetched: RawMarket,
    calendar: TradingCalendar,
    as_of: pd.Timestamp,
    now: pd.Timestamp,
    quality_cfg,
    restated_policy: str,
) -> Update:
    """The new bars of `fetched` (the source) after the `stored` window (the store's recent
    bars of the same source), checked; nothing is written here."""
    if restated_policy not in RESTATED_POLICIES:
        raise ValueError(
            f"forecast.restated={restated_policy!r}: expected one of {RESTATED_POLICIES}"
        )
    bars, unsettled, off_calendar = settled(fetched.ohlcv[OHLCV_COLUMNS], calendar, as_of, now)
    stored = stored.assign(ts=pd.to_datetime(stored["ts"]).dt.normalize())
    last = stored.groupby("symbol")["ts"].max()
    newest = bars["symbol"].map(last)
    unknown = sorted(set(bars.loc[newest.isna().to_numpy(), "symbol"]))
    fresh = bars[(bars["ts"] > newest).to_numpy()]
    restated = restatements(stored, bars)
    if len(restated) and restated_policy == "refuse":
        raise RestatedBarsError(
            f"the source restated {len(restated)} value(s) of {restated[['symbol', 'ts']].drop_duplicates().shape[0]} "
            f"stored bar(s) of {restated['symbol'].nunique()} symbol(s) (e.g. "
            f"{_example(restated)}) and forecast.restated=refuse: nothing was written; "
            "re-run prepare on the source as it is now, or set forecast.restated=report"
        )
    new_symbols = {
        symbol: "not in the store's recent history: a symbol enters the store with prepare"
        for symbol in unknown
    }
    if fresh.empty:
        reports = _reports(fetched, stored)
        return Update(fresh, reports, restated, unsettled, off_calendar, None, new_symbols)
    window = pd.concat([stored[OHLCV_COLUMNS], fresh], ignore_index=True)
    market = RawMarket(ohlcv=window, earnings=fetched.earnings, source=fetched.source)
    validated, quality = validate(market, quality_cfg)
    kept = validated.ohlcv.merge(fresh[["symbol", "ts"]], on=["symbol", "ts"])
    skipped = new_symbols | {
        symbol: "dropped by the quality checks of the new bars (see the data-quality report)"
        for symbol in set(fresh["symbol"]) - set(validated.ohlcv["symbol"])
    }
    return Update(
        kept[OHLCV_COLUMNS],
        _reports(fetched, stored),
        restated,
        unsettled,
        off_calendar,
        quality,
        skipped,
    )


def _reports(fetched: RawMarket, stored: pd.DataFrame) -> pd.DataFrame:
    """The source's reports of the symbols the store has bars of."""
    reports = fetched.earnings
    return reports[reports["symbol"].isin(set(stored["symbol"]))].reset_index(drop=True)


def _example(restated: pd.DataFrame) -> str:
    row = restated.iloc[0]
    return (
        f"{row['symbol']} {pd.Timestamp(row['ts']).date()} {row['column']}: stored "
        f"{row['stored']:.6g}, now {row['source']:.6g}"
    )

"""The as-of close's features, with prepare's code on a bounded window of stored bars, and
which reports are out at the run.

prepare computes every feature over a symbol's whole history; here the same
`compute_features` runs on the last `history_days` sessions. Rolling windows see the same
bars; the exponential averages (RSI, MACD, ATR) forget their start geometrically, so a
window of a few hundred sessions matches the whole history to far below float32 precision
(tests/test_forecast.py compares them day by day on a real price file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.config_schema import CHOICES
from nextday.dataset.build import compute_features
from nextday.features import TECHNICAL_FEATURES
from nextday.features.technical import LONGEST_WINDOW

SESSIONS = CHOICES["forecast.session"]


def known_reports(reports: pd.DataFrame, as_of: pd.Timestamp, session: str) -> pd.DataFrame:
    """The reports out at the run: published by the as-of close (evening), and before the pre-
    open run also those due before the next open (bmo of the next session, whose session date
    is the as-of day)."""
    if session not in SESSIONS:
        raise ValueError(f"forecast.session={session!r}: expected one of {SESSIONS}")
    if reports.empty:
        return reports
    published = pd.to_datetime(reports["ts"]).dt.normalize() <= as_of
    belongs = pd.to_datetime(reports["session_date"]) <= as_of
    if session == "pre_open":
        return reports[belongs.to_numpy()]
    return reports[(published & belongs).to_numpy()]


def due_before_open(reports: pd.DataFrame, as_of: pd.Timestamp) -> set[str]:
    """Symbols whose report lands between the as-of close and the next open but is not out at
    the evening run: bmo reports of the next session (their session date is the as-of day)."""
    if reports.empty:
        return set()
    session = pd.to_datetime(reports["session_date"]) == as_of
    later = pd.to_datetime(reports["ts"]).dt.normalize() > as_of
    due = reports[(session & later & (reports["timing"] == "bmo")).to_numpy()]
    return set(due["symbol"])


@dataclass(frozen=True)
class AsOfFeatures:
    rows: pd.DataFrame  # symbol, ts, is_earnings and the 37 features, one row per symbol
    skipped: dict[str, str]  # symbol -> why it has no row


def as_of_features(
    bars: pd.DataFrame,
    reports: pd.DataFrame,
    as_of: pd.Timestamp,
    warmup_days: int,
    max_days_since_earnings: int,
) -> AsOfFeatures:
    """The features at the `as_of` close of every symbol of `bars` (the window: symbol, ts,
    OHLCV) that has a bar that day and the history the longest window needs."""
    frame, _ = compute_features(bars, reports, max_days_since_earnings)
    today = frame[frame["date"] == as_of]
    skipped: dict[str, str] = {}
    last_bar = pd.to_datetime(bars["ts"]).groupby(bars["symbol"]).max()
    for symbol in sorted(set(last_bar.index) - set(today["symbol"])):
        skipped[symbol] = (
            f"no bar on {as_of.date()} (last bar {last_bar[symbol].date()}): halted or delisted"
        )
    short = today["position"] < max(warmup_days, LONGEST_WINDOW)
    for symbol, position in today.loc[short, ["symbol", "position"]].itertuples(index=False):
        skipped[symbol] = (
            f"{position + 1} bars of history, the features need {max(warmup_days, LONGEST_WINDOW)}"
        )
    today = today[~short.to_numpy()]
    missing = today[TECHNICAL_FEATURES].isna().any(axis=1).to_numpy()
    for symbol, row in today[missing].set_index("symbol")[TECHNICAL_FEATURES].iterrows():
        empty = [name for name in TECHNICAL_FEATURES if np.isnan(row[name])]
        skipped[symbol] = f"features without a value at the close: {', '.join(empty[:4])}"
    today = today[~missing]
    rows = today.drop(columns=["label", "position"]).rename(columns={"date": "ts"})
    return AsOfFeatures(rows.sort_values("symbol").reset_index(drop=True), skipped)

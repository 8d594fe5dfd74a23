"""Record tests/fixtures/yfinance/incremental_*.csv: the daily run's incremental downloads.

    PYTHONHASHSEED=2 python scripts/make_yfinance_incremental_fixtures.py

Yahoo is not reached. As for tests/fixtures/yfinance/download.csv, yfinance's own
`download()` runs with `yfinance.multi.Ticker` replaced by hand-built per-ticker histories
(what `Ticker(sym).history(...)` returns: one tz-aware America/New_York row per session, int
volume), so that the frame written is yfinance's multi-ticker assembly of them: the union of
the tickers' dates, all-NaN rows for a ticker without a bar on a date, tickers in set order
(PYTHONHASHSEED=2 gives the recorded CCC, BBB, AAA: not the order asked for).

The window, NYSE sessions 2024-11-19 to 2024-12-02 around Thanksgiving (2024-11-28, closed;
2024-11-29 closes at 13:00):

- AAA trades every session; CCC too; BBB stops trading after 2024-11-22 (its rows are NaN
  from 2024-11-25 on);
- `incremental_in_session.csv`: the download of a run on 2024-12-02 at 11:00 New York time
  (as-of 2024-11-29, target 2024-12-02, so `end` 2024-12-03): the last row is 2024-12-02's
  partial bar (high, low and volume so far, close = the last trade);
- `incremental_closed.csv`: the same download after that session's close (target
  2024-12-03, `end` 2024-12-04): 2024-12-02 is the final bar; every earlier bar is the same
  as in the in-session response;
- `incremental_restated.csv`: the closed download as the vendor later gave it, with AAA's
  close of 2024-11-21 revised from 102.40 to 102.55 (a restatement of a bar the store
  already holds); nothing else differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "yfinance"
TICKERS = ["AAA", "BBB", "CCC"]
START = "2024-11-19"
SESSIONS = [  # NYSE: no 2024-11-28 (Thanksgiving)
    "2024-11-19", "2024-11-20", "2024-11-21", "2024-11-22", "2024-11-25",
    "2024-11-26", "2024-11-27", "2024-11-29", "2024-12-02",
]  # fmt: skip
CLOSES = {
    "AAA": [101.20, 101.85, 102.40, 101.95, 102.70, 103.10, 102.85, 103.60, 104.25],
    "BBB": [40.15, 39.90, 40.30, 40.05],  # stops trading after 2024-11-22
    "CCC": [55.40, 55.10, 55.75, 56.20, 56.05, 56.60, 56.90, 57.15, 56.80],
}
VOLUMES = {
    "AAA": [3_410_200, 2_980_450, 3_655_010, 3_120_700, 2_870_330, 3_005_900, 2_450_120,
            1_380_560, 3_398_740],
    "BBB": [1_905_300, 2_110_840, 1_760_020, 2_480_910],
    "CCC": [812_400, 790_150, 905_330, 868_020, 760_910, 845_600, 702_330, 398_120, 880_470],
}  # fmt: skip
# 2024-12-02 at 11:00: the session so far (the open is the day's; the rest moves until 16:00)
PARTIAL = {
    "AAA": {"High": 104.05, "Low": 103.40, "Close": 103.90, "Volume": 1_204_330},
    "CCC": {"High": 57.45, "Low": 56.95, "Close": 57.05, "Volume": 301_870},
}
RESTATED = ("AAA", "2024-11-21", 102.55)


def history(symbol: str) -> pd.DataFrame:
    """A ticker's final daily bars: open 0.10 above the previous close (0.20 below the close
    on the first day), high 0.45 above and low 0.40 below the open and close, Adj Close the
    close * 0.985 (so that a parser taking it would show)."""
    closes = CLOSES[symbol]
    rows = []
    for day, close, volume in zip(SESSIONS, closes, VOLUMES[symbol], strict=False):
        opened = round(rows[-1]["Close"] + 0.10 if rows else close - 0.20, 2)
        rows.append(
            {
                "Date": pd.Timestamp(day, tz="America/New_York"),
                "Open": opened,
                "High": round(max(opened, close) + 0.45, 2),
                "Low": round(min(opened, close) - 0.40, 2),
                "Close": close,
                "Adj Close": round(close * 0.985, 4),
                "Volume": volume,
            }
        )
    frame = pd.DataFrame(rows).set_index("Date")
    frame["Volume"] = frame["Volume"].astype("int64")
    return frame


def in_session(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """`frame` with its 2024-12-02 bar as it stood at 11:00."""
    frame = frame.copy()
    day = pd.Timestamp("2024-12-02", tz="America/New_York")
    if day in frame.index:
        for column, value in PARTIAL[symbol].items():
            frame.loc[day, column] = value
        frame.loc[day, "Adj Close"] = round(PARTIAL[symbol]["Close"] * 0.985, 4)
    return frame


def restated(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    frame = frame.copy()
    who, day, close = RESTATED
    if symbol == who:
        frame.loc[pd.Timestamp(day, tz="America/New_York"), "Close"] = close
    return frame


def assemble(histories: dict[str, pd.DataFrame], end: str) -> pd.DataFrame:
    """yfinance.download over per-ticker histories (yfinance's own assembly, offline)."""
    import yfinance
    import yfinance.multi as multi

    class HistoryOnly:
        def __init__(self, ticker, session=None):  # noqa: ARG002 (yfinance.Ticker's signature)
            self.ticker, self._price_history = ticker, None

        def history(self, start=None, end=None, **kwargs):  # noqa: ARG002 (yfinance's)
            frame = histories[self.ticker]
            first = pd.Timestamp(start, tz="America/New_York")
            last = pd.Timestamp(end, tz="America/New_York")
            return frame[(frame.index >= first) & (frame.index < last)].copy()

    real = multi.Ticker
    multi.Ticker = HistoryOnly
    try:
        return yfinance.download(
            tickers=TICKERS,
            start=START,
            end=end,
            group_by="ticker",
            auto_adjust=False,
            actions=False,
            threads=False,
            progress=False,
        )
    finally:
        multi.Ticker = real


def main() -> None:
    final = {symbol: history(symbol) for symbol in TICKERS}
    responses = {
        "incremental_in_session.csv": (
            {s: in_session(f, s) for s, f in final.items()},
            "2024-12-03",
        ),
        "incremental_closed.csv": (final, "2024-12-04"),
        "incremental_restated.csv": ({s: restated(f, s) for s, f in final.items()}, "2024-12-04"),
    }
    for name, (histories, end) in responses.items():
        frame = assemble(histories, end)
        frame.to_csv(OUT / name)
        tickers = list(dict.fromkeys(frame.columns.get_level_values(0)))
        print(f"{OUT / name}: {frame.shape[0]} rows, tickers {tickers}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Real daily prices for tests (tests/fixtures/real, see its README), and bars shaped like them.

`real_closes` are the adjusted closes of 20 US large caps, 2012-2019, as skfolio ships them.
`close_only_csv` writes them as a user's close-only price file; `real_shaped_bars` gives full
OHLCV bars around the real closes (opens, ranges and volumes drawn to look like a real feed)
for the data-quality tests, which plant each defect into them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REAL = Path(__file__).parent / "fixtures" / "real"
CLOSES = REAL / "sp500_closes_2012_2019.csv.gz"


def real_closes(start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Wide [date x symbol] adjusted closes of 20 US large caps."""
    closes = pd.read_csv(CLOSES, parse_dates=["Date"], index_col="Date")
    return closes.loc[start:end]


def close_only_csv(path: Path, start: str | None = None, end: str | None = None) -> Path:
    """The real closes as a long close-only CSV (symbol, date, close): what many users have."""
    long = real_closes(start, end).rename_axis("date").reset_index()
    long = long.melt(id_vars="date", var_name="symbol", value_name="close")
    long["date"] = long["date"].dt.strftime("%Y-%m-%d")
    long[["symbol", "date", "close"]].to_csv(path, index=False)
    return path


def real_shaped_bars(
    symbols: int = 4, start: str = "2016-01-01", end: str = "2017-06-30", seed: int = 0
) -> pd.DataFrame:
    """OHLCV bars (symbol, ts, open, high, low, close, volume) around real closes."""
    closes = real_closes(start, end).iloc[:, :symbols]
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in closes.columns:
        close = closes[symbol].to_numpy()
        previous = np.concatenate([[close[0]], close[:-1]])
        open_ = previous * (1 + rng.normal(0, 0.004, len(close)))
        top = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.006, len(close))))
        bottom = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.006, len(close))))
        volume = np.round(rng.lognormal(15, 0.4, len(close)))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "ts": closes.index.astype("datetime64[ns]"),
                    "open": open_,
                    "high": top,
                    "low": bottom,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)

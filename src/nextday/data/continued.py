"""The built-in market continued past the bars prepare stored: the same symbols, prices and
volumes carried on from their own history, optionally with a planted regime change. The daily
run reads it as the built-in market's new bars (`nextday.daily.feed`), and `live` replays the
daily run over it."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from nextday.data.schema import RawMarket
from nextday.data.synthetic import (
    TRADING_DAYS_PER_YEAR,
    MarketSpec,
    RegimeChange,
    generate_market,
)
from nextday.features.technical import LONGEST_WINDOW

CONTINUED_SOURCE = "synthetic-live"  # the continued days' bars and reports in the store

# bars of history kept before the live days: the longest feature window and some margin
HISTORY_DAYS = 3 * LONGEST_WINDOW
# days simulated before the live period, so that the new stretch's volatility has settled
# (GARCH starts at its long-run level and takes a few weeks to reach its typical one)
BURN_IN = 120


def continue_market(
    spec: MarketSpec,
    history: RawMarket,
    days: int,
    change: RegimeChange | None = None,
    path_seed: int | None = None,
) -> RawMarket:
    """`days` trading days of the market `spec` describes after the last bar of `history`
    (its recent bars: at least BURN_IN days). `change.day` counts live days.

    The new stretch is drawn from `path_seed` (default: spec.seed + 1) and simulated from
    BURN_IN days before the live period, so its volatility has settled; each symbol's
    prices and volumes are then scaled to carry on from its own history (last close, mean
    volume over the burn-in days), and only the days after the history are kept.
    """
    if days < 1:
        raise ValueError(f"live.days must be at least 1, got {days}")
    bars = history.ohlcv
    last_date = pd.Timestamp(bars["ts"].max())
    overlap = pd.bdate_range(end=last_date, periods=BURN_IN)
    simulated = max(BURN_IN + days, 2 * 63)  # the generator wants at least two quarters
    live_spec = replace(
        spec,
        years=simulated / TRADING_DAYS_PER_YEAR,
        start_date=str(overlap[0].date()),
        change=None if change is None else replace(change, day=BURN_IN + change.day),
    )
    market = generate_market(live_spec, spec.seed + 1 if path_seed is None else path_seed)
    foreign = sorted(set(bars["symbol"]) - set(market.ohlcv["symbol"]))
    if foreign:
        raise ValueError(
            f"the history has symbols {foreign[:5]} that this market does not draw: another market?"
        )
    # the symbols prepare kept (its quality checks may drop some the generator draws)
    ohlcv = market.ohlcv[market.ohlcv["symbol"].isin(set(bars["symbol"]))]

    # level of each symbol: its last close and mean volume over the burn-in, history vs draw
    def levels(frame: pd.DataFrame) -> pd.DataFrame:
        recent = frame[frame["ts"].isin(overlap)].sort_values("ts").groupby("symbol")
        return pd.DataFrame({"close": recent["close"].last(), "volume": recent["volume"].mean()})

    scale = levels(bars) / levels(ohlcv)
    dates = pd.bdate_range(last_date, periods=days + 1)[1:]
    live = ohlcv[ohlcv["ts"].isin(dates)].copy()
    price = live["symbol"].map(scale["close"])
    for column in ("open", "high", "low", "close"):
        live[column] = live[column] * price
    live["volume"] = (live["volume"] * live["symbol"].map(scale["volume"])).round()
    session = pd.to_datetime(market.earnings["session_date"])
    regimes = market.regimes
    assert regimes is not None  # the synthetic market always records its regimes
    kept = session.isin(dates) & market.earnings["symbol"].isin(set(bars["symbol"]))
    return RawMarket(
        ohlcv=live.reset_index(drop=True),
        earnings=market.earnings[kept].reset_index(drop=True),
        source=CONTINUED_SOURCE,
        regimes=regimes[regimes["ts"].isin(dates)].reset_index(drop=True),
        symbols=market.symbols,
    )

"""A simulated live period: the built-in market continued past the data a model saw.

The monitor needs traffic to judge. On the synthetic market, `continue_market` carries the
prepared market on for some trading days (same symbols, prices continued from their last
close, optionally with a planted regime change), and `live_features` computes what a live
system would have at each close: the features of the new days, from the stored history plus
the new bars, with nothing of the future.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from nextday.data.schema import RawMarket
from nextday.data.synthetic import TRADING_DAYS_PER_YEAR, MarketSpec, RegimeChange, generate_market
from nextday.dataset.build import compute_features
from nextday.features import TECHNICAL_FEATURES
from nextday.features.technical import LONGEST_WINDOW

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
    ohlcv = market.ohlcv
    missing = sorted(set(ohlcv["symbol"]) - set(bars["symbol"]))
    if missing:
        raise ValueError(f"the history has no bars of symbols {missing[:5]}: another market?")

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
    return RawMarket(
        ohlcv=live.reset_index(drop=True),
        earnings=market.earnings[session.isin(dates)].reset_index(drop=True),
        source="synthetic-live",
        regimes=market.regimes[market.regimes["ts"].isin(dates)].reset_index(drop=True),
        symbols=market.symbols,
    )


def live_features(
    history: RawMarket, live: RawMarket, max_days_since_earnings: int = 126
) -> pd.DataFrame:
    """Features of every live bar (symbol, ts, is_earnings, the 37 features), computed from
    the history's bars and reports and the live ones. Features at a date use only bars up to
    that close, so computing them all at once equals computing them day by day."""
    ohlcv = pd.concat([history.ohlcv, live.ohlcv], ignore_index=True)
    earnings = pd.concat([history.earnings, live.earnings], ignore_index=True)
    frame, _ = compute_features(ohlcv, earnings, max_days_since_earnings)
    dates = pd.to_datetime(live.ohlcv["ts"]).unique()
    frame = frame[frame["date"].isin(dates)]
    frame = frame[frame[TECHNICAL_FEATURES].notna().all(axis=1)]
    return frame.drop(columns=["label", "position"]).rename(columns={"date": "ts"})

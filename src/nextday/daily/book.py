"""Tomorrow's book and today's orders from the forecast, by the backtest's own rule.

The legs come from `backtest.strategy.revise_legs` (the holding band and the rebalance
schedule of `backtest.trading`, counted in sessions since the book started), the weights from
`leg_weights` (equal within each leg), and each order's estimated cost from the backtest's
cost model (`backtest.costs.name_costs`: half-spread plus square-root impact at the book's
capital, with the frictions known at the as-of close). The book is a set of target weights;
shares are at the as-of close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.backtest.costs import CostModel, frictions, name_costs
from nextday.backtest.strategy import TradingRule, leg_weights, revise_legs


@dataclass(frozen=True)
class Book:
    positions: pd.DataFrame  # the `positions` rows: as_of, symbol, weight, shares, price, book_day
    orders: pd.DataFrame  # symbol, side, shares, notional, weight_before, weight_after, cost
    day: int  # the book's session count (0: the first book)

    @property
    def turnover(self) -> float:
        """sum |w_after - w_before| (building the first book counts)."""
        return float((self.orders["weight_after"] - self.orders["weight_before"]).abs().sum())


def next_book(
    forecast: pd.DataFrame,
    previous: pd.DataFrame,
    previous_day: int | None,
    bars: pd.DataFrame,
    as_of: pd.Timestamp,
    rule: TradingRule,
    capital: float,
    costs: CostModel,
) -> Book:
    """The book after the `as_of` close: the legs revised from `previous` (the positions held
    after the last run, empty for a new book) on today's `forecast` (symbol, prediction), and
    the orders that take the book there. `bars`: the window of bars (frictions, prices)."""
    day = 0 if previous_day is None else previous_day + 1
    names = sorted(set(forecast["symbol"]) | set(previous["symbol"]))
    signal = forecast.set_index("symbol")["prediction"].reindex(names).to_numpy(dtype=float)
    held = previous.set_index("symbol")["weight"].reindex(names).fillna(0.0).to_numpy()
    long, short = revise_legs(held > 0, held < 0, signal, rule, day)
    weights = leg_weights(long[None, :], short[None, :])[0]
    close = _closes(bars, as_of).reindex(names)
    trades = pd.DataFrame([weights - held], index=pd.DatetimeIndex([as_of]), columns=names)
    window = bars[bars["symbol"].isin(names)]
    cost = name_costs(trades, frictions(window, costs, [as_of]), capital, costs).iloc[0]
    delta = weights - held
    traded = np.abs(delta) > 0
    orders = pd.DataFrame(
        {
            "symbol": names,
            "side": np.where(delta > 0, "buy", "sell"),
            "shares": np.round(np.abs(delta) * capital / close.to_numpy(), 4),
            "notional": np.abs(delta) * capital,
            "price": close.to_numpy(),
            "weight_before": held,
            "weight_after": weights,
            "estimated_cost": cost.to_numpy() * capital,
        }
    )[traded].reset_index(drop=True)
    kept = weights != 0
    positions = pd.DataFrame(
        {
            "as_of": as_of,
            "symbol": np.array(names)[kept],
            "weight": weights[kept],
            "shares": (weights * capital / close.to_numpy())[kept],
            "price": close.to_numpy()[kept],
            "book_day": day,
        }
    )
    return Book(positions, orders, day)


def _closes(bars: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Each symbol's last close up to the as-of day."""
    known = bars[pd.to_datetime(bars["ts"]) <= as_of].sort_values("ts")
    return known.groupby("symbol")["close"].last()

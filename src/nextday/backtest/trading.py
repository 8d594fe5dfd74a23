"""Every book the backtest compares, traded with the same rule and the same costs.

Each signal (the model, the baselines, on synthetic data the oracle) trades its long-short
book under `backtest.trading` with equal weights; the model also trades the same legs sized
by its interval (`sized`) and, when the rule controls turnover, the legs rebuilt every day
(`daily_rebuild`: what the control saves). The model's books also get a capacity curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.backtest import strategy
from nextday.backtest.costs import Frictions
from nextday.backtest.metrics import DAILY_REBUILD, MODEL, SIZED
from nextday.backtest.settings import BacktestSettings
from nextday.contracts.outputs import INTERVALS


@dataclass(frozen=True)
class Trading:
    books: dict[str, pd.DataFrame]  # book -> daily gross, turnover, spread, impact, cost, net
    capacity: pd.DataFrame  # book, capital, sharpe, ann_return, cost_bps_per_day


def trade(
    rows: pd.DataFrame,
    signals: dict[str, np.ndarray],
    settings: BacktestSettings,
    frictions: Frictions,
) -> Trading:
    """The books of `signals` (aligned with `rows`, which hold symbol, date, realized and the
    model's interval) and the model's capacity curves."""
    realized = strategy.wide(rows, rows["realized"].to_numpy())
    tradable = realized.notna()
    frictions = frictions.aligned(realized.index, realized.columns)

    def signal_frame(values) -> pd.DataFrame:
        return strategy.wide(rows, values).reindex_like(realized).where(tradable)

    def run(weights: np.ndarray) -> pd.DataFrame:
        return strategy.book(weights, realized, frictions, settings.capital, settings.costs)

    books, held = {}, {}
    for name, values in signals.items():
        long, short = strategy.legs(signal_frame(values), settings.trading)
        held[name] = strategy.leg_weights(long, short)
        books[name] = run(held[name])
        if name == MODEL:
            model_legs = long, short
    lower, upper = INTERVALS[settings.level]
    score = strategy.interval_score(
        signal_frame(signals[MODEL]),
        signal_frame(rows[lower].to_numpy()),
        signal_frame(rows[upper].to_numpy()),
        settings.level,
    )
    score = strategy.as_of_rebalances(score, settings.trading.rebalance_every)
    held[SIZED] = strategy.leg_weights(*model_legs, score=score)
    books[SIZED] = run(held[SIZED])
    if not settings.trading.rebuilds_daily:
        rebuilt = strategy.legs(signal_frame(signals[MODEL]), settings.trading.daily_rebuild())
        held[DAILY_REBUILD] = strategy.leg_weights(*rebuilt)
        books[DAILY_REBUILD] = run(held[DAILY_REBUILD])
    capacity = pd.concat(
        [
            strategy.capacity(
                books[name], held[name], frictions, settings.capacity, settings.costs
            ).assign(book=name)
            for name in (MODEL, SIZED)
        ],
        ignore_index=True,
    )
    return Trading(books, capacity[["book", *capacity.columns.drop("book")]])

"""Judge a walk-forward's predictions: as forecasts (the `bt_*` metrics), as long-short books
beside the equal-weight market, day by day, and broken down by regime, volatility and surprise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.backtest import breakdowns, strategy
from nextday.backtest.daily import daily_series
from nextday.backtest.metrics import MODEL, backtest_metrics, forecasts, strategy_prefix
from nextday.backtest.settings import BacktestSettings
from nextday.backtest.walkforward import WalkForward, period_dates

LEAK_FLAG = "bt_leak_flag"
DAYS = "bt_days"


@dataclass
class Backtest:
    rows: pd.DataFrame  # the predictions with their realized return and regimes
    books: dict[str, pd.DataFrame]  # signal -> daily gross, turnover, cost and net return
    market: pd.Series  # the equal-weight market's daily return
    metrics: dict[str, float]  # bt_*
    daily: pd.DataFrame  # see `daily_series`
    tables: dict[str, pd.DataFrame]  # breakdown name -> table
    folds: pd.DataFrame | None  # refit mode: one row per fold

    @property
    def leak(self) -> bool:
        """The model's book earns a Sharpe too good to be true after costs."""
        return bool(self.metrics[LEAK_FLAG])


def judge(
    walk: WalkForward,
    dataset: pd.DataFrame,
    settings: BacktestSettings,
    true_regimes: pd.DataFrame | None,
    by_surprise: bool,
) -> Backtest:
    """Everything the backtest reports about `walk` (predictions on `dataset`'s period);
    `true_regimes` (ts, regime) on synthetic data; `by_surprise` for the earnings model."""
    rows = walk.rows.merge(
        dataset[["symbol", "date", "vol_20d", "eps_surprise"]], on=["symbol", "date"], how="left"
    )
    realized = pd.Series(
        strategy.realized_returns(dataset, settings.execution),
        index=pd.MultiIndex.from_frame(dataset[["symbol", "date"]]),
    )
    keys = pd.MultiIndex.from_frame(rows[["symbol", "date"]])
    rows["realized"] = realized.reindex(keys).to_numpy()
    signals = forecasts(rows, walk.signals)
    books = {
        name: strategy.long_short(
            rows["symbol"], rows["date"], signal, rows["realized"].to_numpy(),
            settings.quantile, settings.cost_bps,
        )
        for name, signal in signals.items()
    }  # fmt: skip
    market = strategy.equal_weight(rows["date"], rows["realized"].to_numpy())
    metrics = backtest_metrics(rows, signals, books, market, settings.level)
    sharpe = metrics.get(f"{strategy_prefix(MODEL)}_sharpe", np.nan)
    metrics[LEAK_FLAG] = float(sharpe > settings.leak_sharpe)
    metrics[DAYS] = float(len(period_dates(dataset, settings.segments)))
    regimes = breakdowns.regime_frame(
        dataset, settings.regime_window, settings.regime_threshold, true_regimes
    )
    rows = rows.merge(regimes, on="date", how="left")
    daily = daily_series(rows, books[MODEL], market, settings.rolling_days, settings.level)
    tables = breakdowns.tables(rows, books[MODEL], settings.level, by_surprise)
    return Backtest(rows, books, market, metrics, daily, tables, walk.folds)

"""Judge a walk-forward's predictions: as forecasts (the `bt_*` metrics), as signals (IC by
horizon, quantile spreads, turnover of the ranking, by group), as long-short books after costs
beside the equal-weight market with confidence intervals on their Sharpe ratios, day by day,
and broken down by regime, volatility and surprise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nextday.backtest import breakdowns, strategy
from nextday.backtest.costs import Frictions
from nextday.backtest.daily import daily_series
from nextday.backtest.metrics import (
    MODEL,
    backtest_metrics,
    forecasts,
    sharpe_significance,
    signal_metrics,
    strategy_prefix,
)
from nextday.backtest.online import online_replay
from nextday.backtest.settings import BacktestSettings
from nextday.backtest.trading import trade
from nextday.backtest.walkforward import WalkForward, period_dates
from nextday.evaluation.signal_analytics import SignalAnalytics, analyze_many, forward_returns
from nextday.timing import stage
from nextday.uncertainty.online import ServedOnline

LEAK_FLAG = "bt_leak_flag"
DAYS = "bt_days"
CAPITAL = "bt_capital"
SECONDS = "bt_seconds"  # + _stage: how long each stage of judging took


@dataclass(frozen=True)
class Market:
    """What the backtest knows of the market besides the dataset."""

    frictions: Frictions  # each name's spread, volatility and volume, for the costs
    groups: pd.Series | None = None  # symbol -> group (sector), where the data has one
    true_regimes: pd.DataFrame | None = None  # synthetic data: the generator's (ts, regime)
    calendar: pd.DatetimeIndex | None = None  # the market's trading days (default: the dataset's)


@dataclass
class Backtest:
    rows: pd.DataFrame  # the predictions with their realized return and regimes
    books: dict[str, pd.DataFrame]  # book -> daily gross, turnover, costs and net return
    market: pd.Series  # the equal-weight market's daily return
    metrics: dict[str, float]  # bt_*
    daily: pd.DataFrame  # see `daily_series`
    tables: dict[str, pd.DataFrame]  # breakdown name -> table
    folds: pd.DataFrame | None  # refit mode: one row per fold
    signals: dict[str, SignalAnalytics]  # signal -> its analytics
    capacity: pd.DataFrame  # the model's books after costs by capital
    notes: tuple[str, ...] = ()  # what the cost model had to assume
    online_rule: str = ""  # the online rule replayed beside the static interval, in words

    @property
    def leak(self) -> bool:
        """The model's book earns a Sharpe too good to be true after costs."""
        return bool(self.metrics[LEAK_FLAG])


def stage_metrics(seconds: dict[str, float]) -> dict[str, float]:
    """bt_seconds_{stage} for each timed stage ("Sharpe intervals" -> bt_seconds_sharpe_intervals)."""
    return {f"{SECONDS}_{name.lower().replace(' ', '_')}": value for name, value in seconds.items()}


def judge(
    walk: WalkForward,
    dataset: pd.DataFrame,
    settings: BacktestSettings,
    market: Market,
    by_surprise: bool,
    trials: int | None = None,
    served: ServedOnline | None = None,
) -> Backtest:
    """Everything the backtest reports about `walk` (predictions on `dataset`'s period);
    `by_surprise` for the earnings model; `trials`: the size of the tuning study the model
    came from (for the deflated Sharpe ratio); `served`: the online rule of the version
    walked (None: calibrate.online's is replayed)."""
    rows = walk.rows.merge(
        dataset[["symbol", "date", "vol_20d", "eps_surprise"]], on=["symbol", "date"], how="left"
    )
    keys = pd.MultiIndex.from_frame(rows[["symbol", "date"]])
    everywhere = pd.MultiIndex.from_frame(dataset[["symbol", "date"]])
    realized = pd.Series(
        strategy.realized_returns(dataset, settings.execution, market.calendar), everywhere
    )
    rows["realized"] = realized.reindex(keys).to_numpy()
    signals = forecasts(rows, walk.signals)
    seconds: dict[str, float] = {}
    with stage("backtest", "signal analytics", seconds):
        forward = forward_returns(dataset, calendar=market.calendar)
        forward = forward.set_index(["symbol", "date"]).reindex(keys)
        groups = None if market.groups is None else rows["symbol"].map(market.groups).to_numpy()
        analytics = analyze_many(signals, rows["symbol"], rows["date"], forward, groups)
    with stage("backtest", "trading", seconds):
        trading = trade(rows, signals, settings, market.frictions)
    books = trading.books
    equal_weight = strategy.equal_weight(rows["date"], rows["realized"].to_numpy())
    with stage("backtest", "forecast metrics", seconds):
        metrics = backtest_metrics(rows, signals, books, equal_weight, settings.level)
    metrics |= signal_metrics(analytics)
    with stage("backtest", "online interval", seconds):
        online = online_replay(rows, dataset, settings.online, served)
    metrics |= online.metrics
    with stage("backtest", "Sharpe intervals", seconds):
        metrics |= sharpe_significance(
            books, equal_weight, settings.ci_level, settings.block_days, settings.draws, trials
        )
    metrics |= stage_metrics(seconds)
    sharpe = metrics.get(f"{strategy_prefix(MODEL)}_sharpe", np.nan)
    metrics[LEAK_FLAG] = float(sharpe > settings.leak_sharpe)
    metrics[DAYS] = float(len(period_dates(dataset, settings.segments)))
    metrics[CAPITAL] = settings.capital
    regimes = breakdowns.regime_frame(
        dataset, settings.regime_window, settings.regime_threshold, market.true_regimes
    )
    rows = rows.merge(regimes, on="date", how="left")
    daily = daily_series(rows, books[MODEL], equal_weight, settings.rolling_days, settings.level)
    daily = daily.join(online.daily)
    daily["rolling_online_coverage"] = (
        daily["online_coverage"].rolling(settings.rolling_days, min_periods=1).mean()
    )
    tables = breakdowns.tables(rows, books[MODEL], settings.level, by_surprise)
    return Backtest(
        rows, books, equal_weight, metrics, daily, tables, walk.folds,
        analytics, trading.capacity, market.frictions.notes, online.rule,
    )  # fmt: skip

"""The parts of backtest.html that judge the model as a signal and as a book: signal
analytics, trading after costs with its significance and capacity, and the one-glance
comparison of every signal with the market."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nextday.backtest import performance
from nextday.backtest.judge import Backtest
from nextday.backtest.metrics import DAILY_REBUILD, MODEL, PREFIX, strategy_prefix
from nextday.backtest.settings import BacktestSettings

MARKET = "market"


def signal(backtest: Backtest, paths: dict[str, Path]) -> list:
    """IC by horizon for every signal, the model's quantile returns, monthly IC, ranking
    turnover and, where the data has groups, IC by group and group-neutral."""
    model = backtest.signals[MODEL]
    horizons = (
        pd.DataFrame({name: found.ic["ic"] for name, found in backtest.signals.items()})
        .T.rename(columns=lambda h: f"rank IC h={h}")
        .rename_axis(columns=None)
    )
    quantiles = model.quantiles.assign(
        mean_bp=model.quantiles["mean"] * 1e4, se_bp=model.quantiles["se"] * 1e4
    )[["mean_bp", "se_bp", "days"]]
    autocorr = ", ".join(f"{n} {f.rank_autocorr:.2f}" for n, f in backtest.signals.items())
    items: list = [
        "Each signal as alphalens judges a factor: the mean daily rank IC against the forward "
        "return over 1, 2, 5 and 10 trading days from the signal's close (the IC decay; "
        "horizons above one day overlap, so their t-statistics use Newey-West errors).",
        horizons.reset_index(names="signal"),
        paths["ic_decay"],
        model.ic.reset_index(names="horizon"),
        f"The model's mean next-day return by signal quintile (1 = lowest), in basis points "
        f"with standard errors over days; top minus bottom {model.spread * 1e4:.2f} bp a day "
        f"(standard error {model.spread_se * 1e4:.2f}).",
        quantiles.reset_index(names="quantile"),
        paths["quantiles"],
        paths["monthly_ic"],
        f"Rank autocorrelation of each signal from one day to the next (1: the ranking never "
        f"changes, so the book barely trades): {autocorr}.",
    ]
    if model.groups is None:
        items.append("No groups (sectors) in this data: IC by group is left out.")
    else:
        items += [
            f"IC within each group, and group-neutral IC {model.group_neutral_ic:.4f} (signal "
            "and forward return net of each day's group mean: what is left without sector bets).",
            model.groups.reset_index(names="group"),
            paths["group_ic"],
        ]
    return items


def trading(backtest: Backtest, settings: BacktestSettings, paths: dict[str, Path]) -> list:
    """The rule and the costs, every book's performance after costs with Sharpe intervals,
    what turnover control and sizing by the interval did, and the capacity curve."""
    rule, costs, metrics = settings.trading, settings.costs, backtest.metrics
    spread = (
        f"a half-spread of {costs.half_spread_bps} bp"
        if costs.half_spread_bps is not None
        else f"a half-spread estimated from each name's daily range (Corwin-Schultz, trailing "
        f"{costs.spread_days} days, within {costs.min_half_spread_bps}-"
        f"{costs.max_half_spread_bps} bp)"
    )
    items: list = [
        f"Each signal's book: long the names in the top {rule.quantile:.0%} and short those in "
        f"the bottom {rule.quantile:.0%} of the day's signal, kept while they stay in the top "
        f"(bottom) {rule.exit_quantile:.0%}, revised every {rule.rebalance_every} trading "
        f"day(s), equal weight, entered at the {settings.execution.replace('_', ' ')}. Costs: "
        f"{spread} plus square-root market impact {costs.impact_coefficient} x daily "
        f"volatility x sqrt(traded dollars / {costs.adv_days}-day average dollar volume), "
        f"on a capital of ${settings.capital:,.0f}.",
        _books(backtest),
        paths["equity"],
        _sharpe_sentence(metrics, settings),
    ]
    if DAILY_REBUILD in backtest.books:
        items.append(
            _difference_sentence(metrics, "turnover_control", _turnover_text(backtest, settings))
        )
    items.append(
        _difference_sentence(
            metrics,
            "sizing",
            "Sizing the same legs by the interval ((prediction - median) / sigma^2, sigma from "
            "the calibrated interval) instead of equally",
        )
    )
    items += [
        "Capacity: the model's books after costs as the capital grows (the spread costs the "
        "same share at any size; the impact grows with the square root of the trade).",
        backtest.capacity,
        paths["capacity"],
        *[f"Cost model: {note}" for note in backtest.notes],
    ]
    return items


def glance(backtest: Backtest) -> pd.DataFrame:
    """Every signal and the market on rank IC, quintile spread, Sharpe after costs and
    maximum drawdown (index: the signal)."""
    rows = {}
    for name, found in backtest.signals.items():
        summary = performance.summary(backtest.books[name]["net"])
        rows[name] = {
            "rank IC (h=1)": float(found.ic.loc[1, "ic"]),
            "Q5-Q1 spread (bp/day)": found.spread * 1e4,
            "Sharpe after costs": summary.get("sharpe", np.nan),
            "max drawdown (%)": summary.get("max_drawdown", np.nan) * 100,
        }
    market = performance.summary(backtest.market)
    rows[MARKET] = {
        "rank IC (h=1)": np.nan,
        "Q5-Q1 spread (bp/day)": np.nan,
        "Sharpe after costs": market.get("sharpe", np.nan),
        "max drawdown (%)": market.get("max_drawdown", np.nan) * 100,
    }
    return pd.DataFrame(rows).T


def _books(backtest: Backtest) -> pd.DataFrame:
    """Each book's summary after costs with its Sharpe interval, and the market's."""
    metrics, rows = backtest.metrics, []
    for name, book in backtest.books.items():
        prefix = f"{strategy_prefix(name)}_sharpe"
        rows.append(
            {
                "book": name,
                **performance.summary(book["net"], book["turnover"]),
                "sharpe_ci_low": metrics.get(f"{prefix}_ci_low", np.nan),
                "sharpe_ci_high": metrics.get(f"{prefix}_ci_high", np.nan),
                "cost_bps_per_day": float(book["cost"].mean() * 1e4),
            }
        )
    rows.append(
        {
            "book": "market (equal weight, long only, no costs)",
            **performance.summary(backtest.market),
            "sharpe_ci_low": metrics.get(f"{PREFIX}_market_sharpe_ci_low", np.nan),
            "sharpe_ci_high": metrics.get(f"{PREFIX}_market_sharpe_ci_high", np.nan),
        }
    )
    return pd.DataFrame(rows).drop(columns="days")


def _sharpe_sentence(metrics: dict[str, float], settings: BacktestSettings) -> str:
    prefix = strategy_prefix(MODEL)
    low, high = metrics.get(f"{prefix}_sharpe_ci_low"), metrics.get(f"{prefix}_sharpe_ci_high")
    if low is None or high is None:
        return "Too few days for a confidence interval on the model's Sharpe ratio."
    verdict = (
        "above zero" if low > 0 else "below zero" if high < 0 else "not distinguishable from zero"
    )
    text = (
        f"The model's Sharpe after costs is {metrics[f'{prefix}_sharpe']:.2f}, "
        f"{settings.ci_level:.0%} interval [{low:.2f}, {high:.2f}] (stationary block bootstrap "
        f"over days, mean block {settings.block_days} days): <b>{verdict}</b>; the probability "
        f"that its true Sharpe is above zero (PSR) is {metrics.get(f'{prefix}_psr', np.nan):.2f}."
    )
    if f"{prefix}_deflated_sharpe" in metrics:
        text += (
            f" The model came from a study of {int(metrics[f'{PREFIX}_trials'])} trials: the "
            f"deflated Sharpe ratio (the probability that it beats the best of that many tries "
            f"of a signal with no skill) is {metrics[f'{prefix}_deflated_sharpe']:.2f}."
        )
    else:
        text += " The model was not tuned by a study, so no deflated Sharpe ratio applies."
    return text


def _turnover_text(backtest: Backtest, settings: BacktestSettings) -> str:
    banded = backtest.books[MODEL]["turnover"].mean()
    daily = backtest.books[DAILY_REBUILD]["turnover"].mean()
    rule = settings.trading
    return (
        f"The turnover control (holding band to the top {rule.exit_quantile:.0%}, revised every "
        f"{rule.rebalance_every} trading day(s)) trades {banded:.2f} of capital a day against "
        f"{daily:.2f} when the legs are rebuilt every day"
    )


def _difference_sentence(metrics: dict[str, float], name: str, what: str) -> str:
    key = f"{PREFIX}_{name}_sharpe_diff"
    if key not in metrics:
        return f"{what}: too few days to tell."
    low, high = metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]
    verdict = (
        "helped" if low > 0 else "hurt" if high < 0 else "made no difference the data can tell"
    )
    return (
        f"{what}: Sharpe after costs changes by {metrics[key]:+.2f} (interval [{low:.2f}, "
        f"{high:.2f}], paired over days): it <b>{verdict}</b>."
    )

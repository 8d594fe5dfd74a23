"""The trading view: a long-short book per signal, with turnover control, sizing and costs.

Legs: a name enters the long (short) leg when its signal is in the top (bottom) `quantile` of
the day's tradable names, and stays there while it remains in the top (bottom)
`exit_quantile`: a holding band, the turnover control (Qlib's top-k with n_drop and a
rebalance every k days are the alternatives; the band keeps a name as long as the signal
still ranks it well, so it trades only on real changes of view). `exit_quantile = quantile`
rebuilds the legs every day. The legs are revised every `rebalance_every` trading days; in
between, only a name that stops trading leaves.

Sizing: `equal` puts +1 on the long leg and -1 on the short leg, equally within each (gross
2, net 0); `interval` weights each leg's names by (prediction - the day's median prediction)
/ sigma^2, sigma the calibrated interval's half-width over its normal quantile: the
mean-variance weight of independent names, on the same names as the equal-weight book, so the
two differ only in what the interval says.

Weights are each day's targets (positions go back to them at every trade; drift between
trades is ignored); turnover is sum |w_t - w_t-1| with the first day's build, and the costs
come from `backtest.costs`. A position formed on the signal at close t is entered at the next
open (open t+1 -> open t+2) or the next close (close t+1 -> close t+2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from nextday.backtest import performance
from nextday.backtest.costs import CostModel, Frictions, daily_costs, impact_by_capital
from nextday.config_schema import CHOICES
from nextday.evaluation.signal_analytics import calendar_positions

EXECUTIONS = CHOICES["backtest.execution"]
SIZINGS = ("equal", "interval")


@dataclass(frozen=True)
class TradingRule:
    quantile: float  # a name enters a leg in the top (bottom) quantile of the day's signal
    exit_quantile: float  # and leaves it when it falls out of the top (bottom) exit_quantile
    rebalance_every: int  # trading days between revisions of the legs

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile <= 0.5:
            raise ValueError(f"backtest.quantile must be in (0, 0.5], got {self.quantile}")
        if not self.quantile <= self.exit_quantile <= 0.5:
            raise ValueError(
                f"backtest.trading.exit_quantile must be in [quantile, 0.5] = "
                f"[{self.quantile}, 0.5], got {self.exit_quantile}"
            )
        if self.rebalance_every < 1:
            raise ValueError(
                f"backtest.trading.rebalance_every must be at least 1, got {self.rebalance_every}"
            )

    @property
    def rebuilds_daily(self) -> bool:
        return self.exit_quantile == self.quantile and self.rebalance_every == 1

    def daily_rebuild(self) -> TradingRule:
        """The same legs without turnover control: rebuilt from the signal every day."""
        return TradingRule(self.quantile, self.quantile, 1)


def realized_returns(frame: pd.DataFrame, execution: str, calendar=None) -> np.ndarray:
    """Per row of `frame` (the whole dataset: symbol, date, label, overnight_gap), the return
    a position formed at close t earns under `execution`; NaN where the data end or the next
    rows are not the next trading days of `calendar` (the market's dates; by default the
    frame's own), as across the embargo the dataset leaves out between segments."""
    if execution not in EXECUTIONS:
        raise ValueError(f"backtest.execution={execution!r}: expected one of {EXECUTIONS}")
    ordered = frame.sort_values(["symbol", "date"], kind="stable")
    by_symbol = ordered.groupby("symbol", sort=False)
    position = pd.Series(calendar_positions(ordered["date"], calendar), index=ordered.index)
    ahead = position.groupby(ordered["symbol"], sort=False)

    def days_later(k: int) -> pd.Series:
        """The row k further down the symbol is k trading days later."""
        return ahead.shift(-k) == position + k

    label = ordered["label"]
    if execution == "next_close":
        out = by_symbol["label"].shift(-1).where(days_later(1))  # close t+1 -> close t+2
    else:
        # open[t+1] = close[t] (1 + gap[t+1]); open[t+2] = close[t+1] (1 + gap[t+2])
        gap_1 = by_symbol["overnight_gap"].shift(-1)
        gap_2 = by_symbol["overnight_gap"].shift(-2)
        out = ((1.0 + label) * (1.0 + gap_2) / (1.0 + gap_1) - 1.0).where(
            days_later(1) & days_later(2)
        )
    return out.reindex(frame.index).to_numpy(dtype=np.float64)


def wide(rows: pd.DataFrame, values) -> pd.DataFrame:
    """`values` (aligned with `rows`) as a date x symbol frame, NaN where a name has no row."""
    frame = pd.DataFrame(
        {"date": rows["date"].to_numpy(), "symbol": rows["symbol"].to_numpy(), "v": values}
    )
    return frame.pivot(index="date", columns="symbol", values="v").sort_index()


def legs(signal: pd.DataFrame, rule: TradingRule) -> tuple[np.ndarray, np.ndarray]:
    """Boolean date x symbol masks of the long and the short leg under `rule`; `signal` is
    NaN where a name cannot be traded that day (no row, or no realized return). Day t of the
    frame is day t of the book (`revise_legs`), which starts empty."""
    values = signal.to_numpy(dtype=np.float64)
    days, names = values.shape
    long, short = np.zeros((days, names), bool), np.zeros((days, names), bool)
    held_long, held_short = np.zeros(names, bool), np.zeros(names, bool)
    for t in range(days):
        held_long, held_short = revise_legs(held_long, held_short, values[t], rule, t)
        long[t], short[t] = held_long, held_short
    return long, short


def revise_legs(
    held_long: np.ndarray, held_short: np.ndarray, values: np.ndarray, rule: TradingRule, day: int
) -> tuple[np.ndarray, np.ndarray]:
    """One day of the book: the legs after day `day` (counted from the book's first) given the
    legs held before it and the day's signal (one value per name, NaN: not tradable). The
    backtest steps it over its period and the daily run once per close: one rule."""
    tradable = np.isfinite(values)
    n = int(tradable.sum())
    if n < 2:  # nothing to rank (a thin or empty day): the legs stand as they are
        return held_long.copy(), held_short.copy()
    held_long, held_short = held_long & tradable, held_short & tradable
    if day % rule.rebalance_every == 0 or not (held_long.any() and held_short.any()):
        k = max(1, int(n * rule.quantile))
        k_exit = max(k, int(n * rule.exit_quantile))
        # best first; ties broken by column order; untradable names last
        top = np.argsort(-np.where(tradable, values, -np.inf), kind="stable")
        held_long = _revise(held_long, top, k, k_exit)
        # a name of the long leg is never a short candidate (ties of a flat signal)
        shortable = tradable & ~held_long
        bottom = np.argsort(np.where(shortable, values, np.inf), kind="stable")
        held_short = _revise(held_short & shortable, bottom, k, k_exit)
    return held_long, held_short


def _revise(held: np.ndarray, order: np.ndarray, k: int, k_exit: int) -> np.ndarray:
    """The k names of a leg: those held that are still among the first `k_exit` of `order`
    (at most k, the best of them), filled up with the best names not held."""
    rank = np.empty(len(order), int)
    rank[order] = np.arange(len(order))
    keep = held & (rank < k_exit)
    if keep.sum() > k:
        keep = np.zeros_like(held)
        keep[[i for i in order if held[i] and rank[i] < k_exit][:k]] = True
    out = keep.copy()
    out[order[~keep[order]][: k - int(keep.sum())]] = True
    return out


def leg_weights(long: np.ndarray, short: np.ndarray, score: np.ndarray | None = None):
    """+1 spread over each day's long leg and -1 over its short leg: equally, or in
    proportion to `score` (positive for the long leg's names, negative for the short's; a
    leg whose scores carry no weight falls back to equal)."""
    out = np.zeros(long.shape)
    for leg, sign in ((long, 1.0), (short, -1.0)):
        size = leg.astype(float)
        if score is not None:
            scored = np.where(leg, np.clip(sign * np.nan_to_num(score), 0.0, None), 0.0)
            has_weight = scored.sum(axis=1, keepdims=True) > 0
            size = np.where(has_weight, scored, size)
        total = size.sum(axis=1, keepdims=True)
        out += sign * np.divide(size, total, out=np.zeros_like(size), where=total > 0)
    return out


def as_of_rebalances(values: np.ndarray, every: int) -> np.ndarray:
    """Each day's row of `values` replaced by the latest rebalance day's (every `every`-th
    day from the first): what a book that trades only on those days sizes by."""
    return values[(np.arange(len(values)) // every) * every]


def interval_score(prediction: pd.DataFrame, lower: pd.DataFrame, upper: pd.DataFrame, level):
    """(prediction - the day's median prediction) / sigma^2, sigma from the central `level`
    interval's width as a normal distribution's: the weight `interval` sizing gives a name."""
    sigma = (upper - lower).to_numpy() / (2.0 * norm.ppf(0.5 + level / 2.0))
    centred = prediction.sub(prediction.median(axis=1), axis=0).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sigma > 0, centred / sigma**2, np.nan)


def book(
    weights: np.ndarray,
    realized: pd.DataFrame,
    frictions: Frictions,
    capital: float,
    costs: CostModel,
) -> pd.DataFrame:
    """Daily gross return, turnover, spread and impact costs and net return of the book that
    holds `weights` (date x symbol, aligned with `realized`) with `capital`."""
    held = pd.DataFrame(weights, index=realized.index, columns=realized.columns)
    gross = (held * realized.fillna(0.0)).sum(axis=1)
    paid = daily_costs(trades(held), frictions, capital, costs)
    daily = pd.DataFrame({"gross": gross, "turnover": trades(held).sum(axis=1)})
    daily = daily.join(paid[["spread", "impact", "cost", "participation"]])
    daily["net"] = daily["gross"] - daily["cost"]
    return daily


def trades(held: pd.DataFrame) -> pd.DataFrame:
    """|w_t - w_t-1| per date and name; building the first book is trading too."""
    out = held.diff().abs()
    out.iloc[0] = held.iloc[0].abs()
    return out


def capacity(
    daily: pd.DataFrame,
    weights: np.ndarray,
    frictions: Frictions,
    capitals: Sequence[float],
    costs: CostModel,
) -> pd.DataFrame:
    """The book's performance after costs at each capital (impact grows with the trade's
    share of each name's volume): one row per capital."""
    held = pd.DataFrame(weights, index=daily.index, columns=frictions.adv.columns)
    paid = impact_by_capital(trades(held), frictions, capitals, costs)
    rows = []
    for capital in capitals:
        net = daily["gross"] - paid[capital]
        summary = performance.summary(net)
        rows.append(
            {
                "capital": float(capital),
                "sharpe": summary.get("sharpe", np.nan),
                "ann_return": summary.get("ann_return", np.nan),
                "cost_bps_per_day": float(paid[capital].mean() * 1e4),
            }
        )
    return pd.DataFrame(rows)


def equal_weight(dates, realized) -> pd.Series:
    """The market itself: every name held with equal weight (long only, no costs)."""
    frame = pd.DataFrame({"date": np.asarray(dates), "r": realized}).dropna()
    return frame.groupby("date")["r"].mean()

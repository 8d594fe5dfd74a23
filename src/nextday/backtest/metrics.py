"""The backtest's `bt_*` metrics, all from `nextday.evaluation` on the same rows.

The model's point metrics are `bt_{metric}`, a baseline's `bt_baseline_{name}_{metric}` (the
zero predictor's too), the oracle's `bt_oracle_{metric}`; the interval's are named by its level
(`bt_coverage_80` for the 0.8 interval); a long-short book's `bt_strategy_{stat}` for the model
and `bt_{book}_strategy_{stat}` for the others (a baseline's or the oracle's signal, the model's
interval-sized book `sized` and its legs rebuilt daily `daily_rebuild`); the market's
`bt_market_{stat}`. A signal's analytics follow its forecast prefix (`bt_ic_h5`,
`bt_baseline_linear_spread_q5_q1`); each book's Sharpe carries its confidence interval
(`bt_strategy_sharpe_ci_low`), and what sizing by the interval and controlling turnover did
to the model's Sharpe after costs is a paired difference (`bt_sizing_sharpe_diff` and
`bt_turnover_control_sharpe_diff`, each with `_ci_low` and `_ci_high`).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from nextday.backtest import performance, significance
from nextday.contracts.metrics import level_tag
from nextday.contracts.outputs import INTERVALS
from nextday.evaluation.diebold_mariano import diebold_mariano
from nextday.evaluation.intervals import interval_metrics
from nextday.evaluation.metrics import point_metrics, prefixed
from nextday.evaluation.signal_analytics import SignalAnalytics

PREFIX = "bt"
MODEL = "model"
ZERO = "zero"
ORACLE = "oracle"
SIZED = "sized"  # the model's legs, sized by its interval
DAILY_REBUILD = "daily_rebuild"  # the model's legs rebuilt every day: no turnover control


def coverage_name(level: float) -> str:
    """The metric holding the coverage of the central `level` interval (bt_coverage_80)."""
    return f"{PREFIX}_coverage_{level_tag(level)}"


def forecast_prefix(forecast: str) -> str:
    """bt for the model, bt_oracle for the oracle, bt_baseline_{name} for a baseline."""
    if forecast == MODEL:
        return PREFIX
    if forecast == ORACLE:
        return f"{PREFIX}_{ORACLE}"
    return f"{PREFIX}_baseline_{forecast}"


def strategy_prefix(signal: str) -> str:
    """bt_strategy for the model's book, bt_{signal}_strategy for another signal's."""
    return f"{PREFIX}_strategy" if signal == MODEL else f"{PREFIX}_{signal}_strategy"


def forecasts(rows: pd.DataFrame, baselines: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's prediction, the baselines' signals and, on synthetic data (where every row
    knows its true conditional mean), the oracle."""
    out = {MODEL: rows["prediction"].to_numpy(), **baselines}
    if "true_mean" in rows and rows["true_mean"].notna().all():
        out[ORACLE] = rows["true_mean"].to_numpy()
    return out


def backtest_metrics(
    rows: pd.DataFrame,
    signals: dict[str, np.ndarray],
    books: dict[str, pd.DataFrame],
    market: pd.Series,
    level: float,
) -> dict[str, float]:
    """Every forecast's point metrics (`signals`, see `forecasts`, and the zero predictor),
    the model's interval at `level`, its Diebold-Mariano p-value against the zero predictor,
    and the summary of every book and of the market."""
    y, dates = rows["label"].to_numpy(), rows["date"].to_numpy()
    prediction = signals[MODEL]
    out: dict[str, float] = {}
    for name, forecast in {**signals, ZERO: np.zeros_like(y)}.items():
        out.update(prefixed(point_metrics(forecast, y, dates), forecast_prefix(name)))
    out[f"{PREFIX}_dm_zero_mae_p"] = diebold_mariano(prediction - y, -y, dates, loss="mae").p_better
    lower, upper = INTERVALS[level]
    out.update(prefixed(interval_metrics(rows[lower], rows[upper], y, level), PREFIX))
    out.setdefault(coverage_name(level), float("nan"))
    for signal, book in books.items():
        prefix = strategy_prefix(signal)
        out.update(prefixed(performance.summary(book["net"], book["turnover"]), prefix))
        out[f"{prefix}_gross_sharpe"] = performance.summary(book["gross"]).get("sharpe", np.nan)
        out[f"{prefix}_cost_bps"] = float(book["cost"].mean() * 1e4)
    out.update(prefixed(performance.summary(market), f"{PREFIX}_market"))
    return out


def signal_metrics(analytics: dict[str, SignalAnalytics]) -> dict[str, float]:
    """Each signal's IC by horizon, quantile spread, rank autocorrelation and group-neutral
    IC, under its forecast prefix."""
    out: dict[str, float] = {}
    for name, found in analytics.items():
        out.update(prefixed(found.metrics(), forecast_prefix(name)))
    return out


def sharpe_significance(
    books: dict[str, pd.DataFrame],
    market: pd.Series,
    level: float,
    block_days: int,
    draws: int,
    trials: int | None,
) -> dict[str, float]:
    """A confidence interval on every book's Sharpe after costs (and the market's); the
    paired differences sizing by the interval and controlling turnover made to the model's;
    its probabilistic Sharpe and, when the model came from a study of `trials` trials, its
    deflated Sharpe (the probability that its Sharpe is above the best of that many tries
    of a signal that has none)."""
    out: dict[str, float] = {}

    def interval(name: str, found: significance.SharpeInterval) -> None:
        out.update({f"{name}_ci_low": found.low, f"{name}_ci_high": found.high})

    sharpe_interval = partial(
        significance.sharpe_interval, level=level, block_days=block_days, draws=draws
    )
    sharpe_difference = partial(
        significance.sharpe_difference, level=level, block_days=block_days, draws=draws
    )
    for name, book in books.items():
        interval(f"{strategy_prefix(name)}_sharpe", sharpe_interval(book["net"]))
    interval(f"{PREFIX}_market_sharpe", sharpe_interval(market))
    # each difference: the book with the idea minus the book without it (> 0: the idea helped)
    comparisons = {"sizing": (SIZED, MODEL), "turnover_control": (MODEL, DAILY_REBUILD)}
    for name, (with_idea, without) in comparisons.items():
        if with_idea in books and without in books:
            difference = sharpe_difference(books[with_idea]["net"], books[without]["net"])
            out[f"{PREFIX}_{name}_sharpe_diff"] = difference.sharpe
            interval(f"{PREFIX}_{name}_sharpe_diff", difference)
    model = books[MODEL]["net"]
    out[f"{strategy_prefix(MODEL)}_psr"] = significance.probabilistic_sharpe(model)
    if trials:
        out[f"{strategy_prefix(MODEL)}_deflated_sharpe"] = significance.deflated_sharpe(
            model, trials
        )
        out[f"{PREFIX}_trials"] = float(trials)
    return {k: float(v) for k, v in out.items() if np.isfinite(v)}

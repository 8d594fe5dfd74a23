"""The backtest's `bt_*` metrics, all from `nextday.evaluation` on the same rows.

The model's point metrics are `bt_{metric}`, a baseline's `bt_baseline_{name}_{metric}` (the
zero predictor's too), the oracle's `bt_oracle_{metric}`; the interval's are named by its level
(`bt_coverage_80` for the 0.8 interval); a long-short book's `bt_strategy_{stat}` for the model
and `bt_{signal}_strategy_{stat}` for the others; the market's `bt_market_{stat}`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.backtest import strategy
from nextday.evaluation.diebold_mariano import diebold_mariano
from nextday.evaluation.intervals import interval_metrics, level_tag
from nextday.evaluation.metrics import daily_ic, point_metrics, prefixed
from nextday.inference.outputs import INTERVALS

PREFIX = "bt"
MODEL = "model"
ZERO = "zero"
ORACLE = "oracle"


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


def icir(ic: pd.Series) -> float:
    """Mean over standard deviation of the daily IC (NaN with fewer than two days)."""
    return float(ic.mean() / ic.std()) if len(ic) > 1 and ic.std() > 0 else float("nan")


def backtest_metrics(
    rows: pd.DataFrame,
    signals: dict[str, np.ndarray],
    books: dict[str, pd.DataFrame],
    market: pd.Series,
    level: float,
) -> dict[str, float]:
    """Every forecast's point metrics (`signals`, see `forecasts`, and the zero predictor),
    the model's interval at `level`, its ICIR and Diebold-Mariano p-value against the zero
    predictor, and the summary of every signal's book and of the market."""
    y, dates = rows["label"].to_numpy(), rows["date"].to_numpy()
    prediction = signals[MODEL]
    out: dict[str, float] = {}
    for name, forecast in {**signals, ZERO: np.zeros_like(y)}.items():
        out.update(prefixed(point_metrics(forecast, y, dates), forecast_prefix(name)))
    out[f"{PREFIX}_dm_zero_mae_p"] = diebold_mariano(prediction - y, -y, dates, loss="mae").p_better
    out[f"{PREFIX}_icir"] = icir(daily_ic(prediction, y, dates))
    lower, upper = INTERVALS[level]
    out.update(prefixed(interval_metrics(rows[lower], rows[upper], y, level), PREFIX))
    out.setdefault(coverage_name(level), float("nan"))
    for signal, book in books.items():
        prefix = strategy_prefix(signal)
        out.update(prefixed(strategy.summary(book["net"], book["turnover"]), prefix))
        out[f"{prefix}_gross_sharpe"] = strategy.summary(book["gross"]).get("sharpe", np.nan)
    out.update(prefixed(strategy.summary(market), f"{PREFIX}_market"))
    return out

"""The backtest day by day: each day's forecast metrics, the same over every day so far
(cumulative: the last day's equal the whole period's `bt_*` metrics) and over a rolling window
for the plots, beside the model's book, the market and the regimes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.backtest import performance
from nextday.contracts.outputs import INTERVALS
from nextday.evaluation.intervals import coverage
from nextday.evaluation.metrics import daily_ic, direction_hits

REGIME_COLUMNS = ("market_regime", "true_regime")


def daily_series(
    rows: pd.DataFrame, book: pd.DataFrame, market: pd.Series, window: int, level: float
) -> pd.DataFrame:
    """One row per date (sorted): rows, mae, rmse, dir_acc, zero_mae, coverage (of the
    `level` interval), ic; their cumulative_ and rolling_ (over `window` days) forms; the
    book's columns as strategy_*, its drawdown, the market's return and the regimes."""
    lower, upper = INTERVALS[level]
    prediction, actual = rows["prediction"].to_numpy(), rows["label"].to_numpy()
    rows = rows.assign(
        abs_error=np.abs(prediction - actual),
        squared_error=(prediction - actual) ** 2,
        abs_zero=np.abs(actual),
        right_direction=direction_hits(prediction, actual),
    )
    grouped = rows.groupby("date")
    daily = pd.DataFrame(
        {
            "rows": grouped.size(),
            "mae": grouped["abs_error"].mean(),
            "rmse": np.sqrt(grouped["squared_error"].mean()),
            "dir_acc": grouped["right_direction"].mean(),
            "zero_mae": grouped["abs_zero"].mean(),
            "coverage": grouped[[lower, upper, "label"]].apply(
                lambda day: coverage(day[lower], day[upper], day["label"])
            ),
        }
    )
    daily["ic"] = daily_ic(prediction, actual, rows["date"].to_numpy())
    # cumulative: over every row (or, for IC, every day) up to and including the date
    counts = daily["rows"].cumsum()
    totals = grouped[["abs_error", "squared_error"]].sum().cumsum()
    daily["cumulative_mae"] = totals["abs_error"] / counts
    daily["cumulative_rmse"] = np.sqrt(totals["squared_error"] / counts)
    daily["cumulative_dir_acc"] = (
        grouped["right_direction"].sum().cumsum() / grouped["right_direction"].count().cumsum()
    )
    daily["cumulative_coverage"] = (daily["coverage"] * daily["rows"]).cumsum() / counts
    daily["cumulative_ic"] = daily["ic"].expanding().mean()
    daily["cumulative_icir"] = (
        daily["ic"].expanding(min_periods=2).mean() / daily["ic"].expanding(min_periods=2).std()
    )
    for column in ("mae", "zero_mae", "ic", "coverage"):
        daily[f"rolling_{column}"] = daily[column].rolling(window, min_periods=1).mean()
    daily = daily.join(book.add_prefix("strategy_"), how="left")
    daily["market"] = market
    daily["strategy_drawdown"] = performance.drawdown(daily["strategy_net"].fillna(0.0))
    regimes = grouped[[c for c in REGIME_COLUMNS if c in rows]].first()
    return daily.join(regimes)

"""The backtest's pictures: equity and drawdown, rolling forecast quality, coverage, the
capacity curve, the one-glance comparison and tables drawn as images (PNG, matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nextday.backtest import performance


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def equity(returns: dict[str, pd.Series], path: Path, highlight: str = "model") -> Path:
    """Growth of 1 after costs for each book, and the highlighted book's drawdown below."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[3, 1])
    for name, series in returns.items():
        top.plot(performance.equity(series), label=name, linewidth=1.6 if name == highlight else 1)
    drawdown = performance.drawdown(returns[highlight])
    bottom.fill_between(drawdown.index, drawdown * 100, color="tab:red", alpha=0.4)
    top.set(ylabel="growth of 1 (after costs)", title="Equity curves: long-short book by signal")
    top.legend(fontsize=8)
    bottom.set(ylabel=f"{highlight} drawdown (%)", xlabel="date")
    return _save(figure, path)


def rolling(daily: pd.DataFrame, path: Path) -> Path:
    """Rolling MAE of the model and of the zero predictor, and the rolling IC."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    top.plot(daily["rolling_mae"], label="model")
    top.plot(daily["rolling_zero_mae"], label="zero predictor", linestyle="--")
    top.set(ylabel="rolling MAE (return)", title="Forecast quality over time")
    top.legend(fontsize=8)
    bottom.plot(daily["rolling_ic"], color="tab:green")
    bottom.axhline(0, color="grey", linewidth=0.8)
    bottom.set(ylabel="rolling rank IC", xlabel="date")
    return _save(figure, path)


def coverage(daily: pd.DataFrame, level: float, path: Path, rule: str = "online") -> Path:
    """The rolling share of actuals inside the `level` interval as served (static) and as the
    online `rule` would have served it, beside the nominal level."""
    figure, axis = plt.subplots(figsize=(9, 3))
    axis.plot(daily["rolling_coverage"], label="static (as served)")
    if "rolling_online_coverage" in daily:
        axis.plot(daily["rolling_online_coverage"], label=f"online ({rule})")
    axis.axhline(level, color="grey", linestyle="--", label=f"nominal {level:.0%}")
    axis.set(
        ylabel="share inside the interval", xlabel="date", ylim=(0, 1),
        title="Interval coverage over time",
    )  # fmt: skip
    axis.legend(fontsize=8)
    return _save(figure, path)


def capacity(table: pd.DataFrame, path: Path) -> Path:
    """Sharpe after costs against capital, one line per book (log capital axis)."""
    figure, axis = plt.subplots(figsize=(9, 3.5))
    for book, part in table.groupby("book", sort=False):
        axis.plot(part["capital"], part["sharpe"], marker="o", label=str(book))
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xscale("log")
    axis.set(
        xlabel="capital (dollars, log scale)", ylabel="annualized Sharpe after costs",
        title="Capacity: market impact grows with the book",
    )  # fmt: skip
    axis.legend(fontsize=8)
    return _save(figure, path)


def comparison(table: pd.DataFrame, path: Path) -> Path:
    """One panel per column of `table` (index: the signal; columns named with their units),
    a bar per signal."""
    columns = list(table.columns)
    figure, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.4))
    for axis, column in zip(np.atleast_1d(axes), columns, strict=True):
        values = table[column].astype(float)
        axis.barh(list(table.index), values.fillna(0.0), color="tab:blue")
        axis.axvline(0, color="grey", linewidth=0.8)
        axis.set(xlabel=column, ylabel="signal")
        axis.invert_yaxis()
    figure.suptitle("At a glance: every signal on the same days")
    return _save(figure, path)


def table_png(table: pd.DataFrame, path: Path, title: str) -> Path:
    """`table` drawn as a PNG image."""
    figure, axis = plt.subplots(figsize=(9, 0.5 + 0.35 * (len(table) + 1)))
    axis.axis("off")
    cells = table.map(lambda v: f"{v:.4f}" if isinstance(v, float) else str(v))
    axis.table(cellText=cells.to_numpy(), colLabels=list(table.columns), loc="center")
    axis.set_title(title)
    return _save(figure, path)

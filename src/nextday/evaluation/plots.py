"""The evaluation plots every model run logs (PNG, Agg backend). Returns are plain fractions
(0.01 = 1%); axes that show them are labelled with their unit and drawn in percent."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import PercentFormatter

from nextday.evaluation.metrics import daily_ic

PERCENT = PercentFormatter(xmax=1.0)


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def loss_curves(history: dict[str, list[float]], best_epoch: int, path: Path) -> Path:
    """Training and validation loss by epoch, with the epoch whose weights were kept."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        if key in history:
            axis.plot(np.arange(1, len(history[key]) + 1), history[key], label=label)
    axis.axvline(best_epoch + 1, color="grey", linestyle="--", label=f"best epoch {best_epoch + 1}")
    axis.set(
        xlabel="epoch",
        ylabel="loss (train.loss on the return, row-weighted)",
        title="Training and validation loss by epoch",
    )
    axis.legend()
    return _save(figure, path)


def predicted_vs_actual(prediction, actual, path: Path, title: str) -> Path:
    """Density of (actual, predicted) pairs on a log colour scale, beside the diagonal."""
    figure, axis = plt.subplots(figsize=(6, 5))
    limit = np.quantile(np.abs(actual), 0.995)
    hexes = axis.hexbin(
        actual, prediction, gridsize=60, bins="log", extent=(-limit, limit, -limit, limit)
    )
    figure.colorbar(hexes, label="rows per cell (log scale)")
    axis.axline((0, 0), slope=1, color="red", linewidth=0.8, label="perfect")
    axis.xaxis.set_major_formatter(PERCENT)
    axis.yaxis.set_major_formatter(PERCENT)
    axis.set(
        xlabel="actual next-day return (%)", ylabel="predicted next-day return (%)", title=title
    )
    axis.legend(loc="upper left")
    return _save(figure, path)


def error_histogram(errors: dict[str, np.ndarray], path: Path) -> Path:
    """Density of each forecast's error (prediction - actual) on a log scale."""
    figure, axis = plt.subplots(figsize=(7, 4))
    limit = max(np.quantile(np.abs(e), 0.995) for e in errors.values())
    bins = np.linspace(-limit, limit, 80)
    for name, error in errors.items():
        axis.hist(
            error,
            bins=bins,
            histtype="step",
            density=True,
            label=f"{name} (MAE {np.mean(np.abs(error)):.4f})",
        )
    axis.xaxis.set_major_formatter(PERCENT)
    axis.set(
        xlabel="error: prediction - actual (return, %)",
        ylabel="density (log scale)",
        title="Error distribution (test)",
        yscale="log",
    )
    axis.legend()
    return _save(figure, path)


def error_by_move_size(
    forecasts: dict[str, np.ndarray], actual, path: Path
) -> tuple[Path, pd.DataFrame]:
    """Each forecast's MAE by decile of the actual move's size; returns the table too."""
    size = pd.qcut(np.abs(actual), 10, labels=False, duplicates="drop")
    table = pd.DataFrame(
        {name: pd.Series(np.abs(p - actual)).groupby(size).mean() for name, p in forecasts.items()}
    )
    table.index = [f"{np.quantile(np.abs(actual), q / 10):.3f}+" for q in table.index]
    figure, axis = plt.subplots(figsize=(8, 4))
    table.plot(ax=axis, marker="o")
    axis.set(
        xlabel="size of the actual move (|return| decile, lower edge)",
        ylabel="MAE (return, log scale)",
        title="Error by size of the actual move (test)",
        yscale="log",
    )
    return _save(figure, path), table


def ic_by_month(
    forecasts: dict[str, np.ndarray], actual, dates, path: Path
) -> tuple[Path, pd.DataFrame]:
    """Each forecast's mean daily rank IC by month; returns the table too."""
    months = {}
    for name, prediction in forecasts.items():
        daily = daily_ic(prediction, actual, dates)
        if len(daily):
            months[name] = daily.groupby(pd.to_datetime(daily.index).to_period("M")).mean()
    table = pd.DataFrame(months)
    figure, axis = plt.subplots(figsize=(9, 4))
    if not table.empty:
        table.index = table.index.astype(str)
        table.plot(ax=axis, kind="bar", width=0.8)
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set(
        xlabel="month",
        ylabel="mean daily rank IC (Spearman)",
        title="Rank information coefficient by month (test)",
    )
    return _save(figure, path), table

"""The plots of alphalens' tear sheet for `signal_analytics` (PNG, Agg backend): IC decay,
returns by quantile, monthly IC heatmap and IC by group."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm

from nextday.evaluation.signal_analytics import SignalAnalytics

BPS = 1e4


def _save(figure, path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def ic_decay(analytics: Mapping[str, SignalAnalytics], path, highlight: str = "model") -> Path:
    """Mean daily rank IC against the forward-return horizon, a line per signal (`highlight`,
    the model, drawn thicker)."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, result in analytics.items():
        strong = name == highlight
        axis.plot(
            result.ic.index,
            result.ic["ic"],
            marker="o",
            linewidth=2.8 if strong else 1.2,
            zorder=3 if strong else 2,
            label=name,
        )
    axis.axhline(0, color="black", linewidth=0.6)
    horizons = sorted({h for result in analytics.values() for h in result.ic.index})
    axis.set_xticks(horizons)
    axis.set(
        xlabel="horizon of the forward return (trading days)",
        ylabel="mean daily rank IC (Spearman)",
        title="IC decay: rank IC by forward-return horizon",
    )
    axis.legend()
    return _save(figure, path)


def quantile_returns(analytics: SignalAnalytics, path) -> Path:
    """Mean 1-day forward return by signal quantile in basis points, +-1 standard error."""
    table = analytics.quantiles
    n = len(table)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.bar(
        table.index,
        table["mean"] * BPS,
        yerr=table["se"] * BPS,
        capsize=4,
        color=["tab:red" if m < 0 else "tab:green" for m in table["mean"]],
    )
    axis.axhline(0, color="black", linewidth=0.6)
    axis.set_xticks(table.index)
    axis.set(
        xlabel=f"signal quantile (1 = lowest of {n})",
        ylabel="mean 1-day forward return (bp)",
        title=(
            f"Return by signal quantile: Q{n} - Q1 = {analytics.spread * BPS:.2f} "
            f"+- {analytics.spread_se * BPS:.2f} bp/day"
        ),
    )
    return _save(figure, path)


def monthly_ic(analytics: SignalAnalytics, path) -> Path:
    """Year x month heatmap of the mean daily rank IC (h = 1), centred on 0."""
    table = analytics.monthly_ic
    if table.empty:  # no date with enough names: an empty grid
        table = pd.DataFrame(np.nan, index=pd.Index(["none"], name="year"), columns=table.columns)
    values = table.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    figure, axis = plt.subplots(figsize=(10, 1.8 + 0.5 * max(len(table), 1)))
    image = axis.imshow(
        np.ma.masked_invalid(values),
        cmap="RdBu",
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit),
        aspect="auto",
    )
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            dark = abs(value) > 0.6 * limit
            colour = "white" if dark else "black"
            axis.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8, color=colour)
    axis.set_xticks(range(values.shape[1]), [str(m) for m in table.columns])
    axis.set_yticks(range(values.shape[0]), [str(y) for y in table.index])
    figure.colorbar(image, label="rank IC")
    axis.set(xlabel="month", ylabel="year", title="Monthly rank IC (1-day forward return)")
    return _save(figure, path)


def group_ic(analytics: SignalAnalytics, path) -> Path:
    """The rank IC within each group (h = 1), one horizontal bar per group."""
    if analytics.groups is None:
        raise ValueError("group_ic needs analytics computed with groups")
    table = analytics.groups
    figure, axis = plt.subplots(figsize=(7, 1.5 + 0.35 * len(table)))
    labels = [str(g) for g in table.index]
    axis.barh(labels, table["ic"], color=["tab:red" if v < 0 else "tab:blue" for v in table["ic"]])
    axis.axvline(0, color="black", linewidth=0.6)
    axis.invert_yaxis()
    axis.set(
        xlabel="mean daily rank IC within the group (1-day horizon)",
        ylabel="group",
        title=f"IC by group (group-neutral IC {analytics.group_neutral_ic:.3f})",
    )
    return _save(figure, path)

"""The backtest's plots (PNG); the page itself is `nextday.reports.html`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plots(daily: pd.DataFrame, equity: dict[str, pd.Series], folder: Path, level: float) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nextday.backtest.strategy import drawdown

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[3, 1])
    for name, returns in equity.items():
        top.plot((1 + returns).cumprod(), label=name, linewidth=1.6 if name == "model" else 1.0)
        if name == "model":
            bottom.fill_between(returns.index, drawdown(returns), color="tab:red", alpha=0.4)
    top.set(ylabel="growth of 1 (after costs)", title="Equity curve: long-short by signal")
    top.legend(fontsize=8)
    bottom.set(ylabel="model drawdown")
    figure.tight_layout()
    paths["equity"] = folder / "equity_drawdown.png"
    figure.savefig(paths["equity"], dpi=100)
    plt.close(figure)

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    top.plot(daily["rolling_mae"], label="model")
    top.plot(daily["rolling_zero_mae"], label="zero predictor", linestyle="--")
    top.set(ylabel="rolling MAE")
    top.legend(fontsize=8)
    bottom.plot(daily["rolling_ic"], color="tab:green")
    bottom.axhline(0, color="grey", linewidth=0.8)
    bottom.set(ylabel="rolling IC")
    figure.tight_layout()
    paths["rolling"] = folder / "rolling_mae_ic.png"
    figure.savefig(paths["rolling"], dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(9, 3))
    axis.plot(daily["rolling_coverage"], label="rolling coverage")
    axis.axhline(level, color="grey", linestyle="--", label=f"nominal {level:.0%}")
    axis.set(ylabel="coverage", ylim=(0, 1), title="Interval coverage over time")
    axis.legend(fontsize=8)
    figure.tight_layout()
    paths["coverage"] = folder / "coverage.png"
    figure.savefig(paths["coverage"], dpi=100)
    plt.close(figure)
    return paths


def table_png(table: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 0.5 + 0.35 * (len(table) + 1)))
    axis.axis("off")
    cells = table.map(lambda v: f"{v:.4f}" if isinstance(v, float) else str(v))
    axis.table(cellText=cells.to_numpy(), colLabels=list(table.columns), loc="center")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

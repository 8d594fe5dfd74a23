"""What the backtest writes: the predictions and daily series (Parquet), the plots (PNG),
`backtest.html` (rendered by `nextday.reports.html`), the rows for the store's
`model_predictions` and the line the step logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.backtest import breakdowns, strategy
from nextday.backtest.judge import Backtest
from nextday.backtest.metrics import MODEL, ORACLE, ZERO, coverage_name, forecast_prefix
from nextday.backtest.settings import BacktestSettings
from nextday.evaluation import claims
from nextday.evaluation.metrics import ic_undefined_reason
from nextday.reports import html as html_page
from nextday.reports.markdown import digits_to_tell_apart

PREDICTIONS = "predictions.parquet"
DAILY = "daily.parquet"
PAGE = "backtest.html"


@dataclass(frozen=True)
class Subject:
    """The model a backtest judges, as the report names it."""

    name: str  # normal or earnings
    arch: str
    uri: str
    version: str


def write(
    backtest: Backtest,
    subject: Subject,
    settings: BacktestSettings,
    checks: pd.DataFrame,
    folder: Path,
) -> Path:
    """Every file of the backtest in `folder`; `checks` are the leak guard's."""
    folder.mkdir(parents=True, exist_ok=True)
    backtest.rows.to_parquet(folder / PREDICTIONS, index=False)
    backtest.daily.to_parquet(folder / DAILY)
    equity = {k: v["net"] for k, v in backtest.books.items()} | {"market": backtest.market}
    paths = plots(backtest.daily, equity, folder, settings.level)
    paths["regimes"] = table_png(
        backtest.tables[breakdowns.MARKET_REGIME], folder / "regimes.png", "By market regime"
    )
    (folder / PAGE).write_text(page(backtest, subject, settings, checks, paths))
    return folder


def headline(backtest: Backtest, settings: BacktestSettings) -> str:
    """One line for the log: the forecast, the interval and the strategy."""
    metrics = backtest.metrics
    leak = " (LIKELY LEAK: Sharpe above the limit)" if backtest.leak else ""
    return (
        f"{settings.mode}, {int(metrics['bt_days'])} days: MAE {metrics['bt_mae']:.5f} vs zero "
        f"{metrics['bt_baseline_zero_mae']:.5f}, IC {metrics.get('bt_ic', np.nan):.4f}, "
        f"coverage {metrics[coverage_name(settings.level)]:.3f}, strategy Sharpe "
        f"{metrics['bt_strategy_sharpe']:.2f} after costs{leak}"
    )


def predictions_table(rows: pd.DataFrame, model_name: str, version: str) -> pd.DataFrame:
    """The backtest's predictions as rows of the store's `model_predictions` (with actuals)."""
    return pd.DataFrame(
        {
            "symbol": rows["symbol"],
            "ts": rows["date"],
            "model_name": model_name,
            "model_version": version,
            "predicted": rows["prediction"],
            "sigma": rows["sigma"],
            "p10": rows["p10"],
            "p50": rows["p50"],
            "p90": rows["p90"],
            "actual": rows["label"],
            "error": rows["prediction"] - rows["label"],
            "latency_ms": np.nan,
            "created_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
        }
    )


def page(
    backtest: Backtest,
    subject: Subject,
    settings: BacktestSettings,
    checks: pd.DataFrame,
    paths: dict[str, Path],
) -> str:
    """backtest.html: the verdict, then forecasts, trading, time, regimes, volatility, (the
    surprise,) the leak guard and (refit) the folds."""
    tables = backtest.tables
    sections = {
        "Verdict": _verdict(backtest, subject, settings),
        "Forecasts": ["Every forecast on the same rows, day by day.", _forecasts(backtest)],
        "Trading view": [
            f"Each day: long the top {settings.quantile:.0%} and short the bottom "
            f"{settings.quantile:.0%} of the signal, equal weight; the baselines' signals and "
            "the oracle (on synthetic data) trade the same way.",
            _trading(backtest),
            paths["equity"],
        ],
        "Over time": [paths["rolling"], paths["coverage"]],
        "By market regime": [
            f"Regime from the market's trailing {settings.regime_window}-day return over its "
            f"volatility (threshold {settings.regime_threshold}).",
            tables[breakdowns.MARKET_REGIME],
            *([tables[breakdowns.TRUE_REGIME]] if breakdowns.TRUE_REGIME in tables else []),
        ],
        "By volatility": [tables[breakdowns.VOLATILITY]],
    }
    if breakdowns.SURPRISE in tables:
        sections["By earnings surprise"] = [tables[breakdowns.SURPRISE]]
    sections["Leak guard"] = [
        "Features recomputed from the raw data as they stood at each sampled close: identical "
        "(a difference fails the run).",
        checks,
    ]
    if backtest.folds is not None:
        sections["Refit folds"] = [backtest.folds]
    return html_page.render(f"Backtest: {subject.name} model", sections)


def _verdict(backtest: Backtest, subject: Subject, settings: BacktestSettings) -> list[str]:
    metrics, significance = backtest.metrics, settings.significance
    p_zero = metrics.get("bt_dm_zero_mae_p")
    comparison = claims.versus("the zero predictor", p_zero, significance)
    if claims.outcome(p_zero, significance) != claims.BEATS:
        comparison = f"<b>{comparison}</b>"
    digits = digits_to_tell_apart([metrics["bt_mae"], metrics["bt_baseline_zero_mae"]])
    ic = ic_undefined_reason(backtest.rows["date"].to_numpy()) or (
        f"{metrics.get('bt_ic', np.nan):.4f} (ICIR {metrics.get('bt_icir', np.nan):.3f})"
    )
    verdict = [
        f"{subject.name} model ({subject.arch}), {subject.uri} (version {subject.version}), "
        f"mode <b>{settings.mode}</b>, {int(metrics['bt_days'])} trading days, execution "
        f"{settings.execution}, costs {settings.cost_bps} bp per side.",
        f"MAE {metrics['bt_mae']:.{digits}g} vs the zero predictor's "
        f"{metrics['bt_baseline_zero_mae']:.{digits}g}: {comparison}.",
        f"IC {ic}; coverage of the {settings.level:.0%} interval "
        f"{metrics[coverage_name(settings.level)]:.3f}.",
        f"Long-short Sharpe after costs {metrics['bt_strategy_sharpe']:.2f} "
        f"(before costs {metrics['bt_strategy_gross_sharpe']:.2f}); the market's "
        f"{metrics.get('bt_market_sharpe', np.nan):.2f}.",
    ]
    if backtest.leak:
        verdict.append(
            f"<span class='warn'>A Sharpe above {settings.leak_sharpe} after costs on daily "
            "equity returns is not credible: treat this as a likely leak until shown otherwise.</span>"
        )
    return verdict


def _forecasts(backtest: Backtest) -> pd.DataFrame:
    """One row per forecast judged (model, zero, linear, tree and, on synthetic data, oracle)."""
    out = []
    for forecast in (MODEL, ZERO, "linear", "tree", ORACLE):
        prefix = forecast_prefix(forecast)
        if f"{prefix}_mae" in backtest.metrics:
            values = {
                m: backtest.metrics.get(f"{prefix}_{m}", np.nan)
                for m in ("mae", "rmse", "dir_acc", "ic", "skill")
            }
            out.append({"forecast": forecast, **values})
    return pd.DataFrame(out)


def _trading(backtest: Backtest) -> pd.DataFrame:
    """Each signal's book and the market, summarized."""
    table = [
        {"signal": name, **strategy.summary(book["net"], book["turnover"])}
        for name, book in backtest.books.items()
    ]
    table.append(
        {"signal": "market (equal weight, long only)", **strategy.summary(backtest.market)}
    )
    return pd.DataFrame(table).drop(columns="days")


def plots(daily: pd.DataFrame, equity: dict[str, pd.Series], folder: Path, level: float) -> dict:
    """The equity curves with the model's drawdown, rolling MAE and IC, and rolling coverage
    of the `level` interval: PNG files in `folder`, by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[3, 1])
    for name, returns in equity.items():
        top.plot((1 + returns).cumprod(), label=name, linewidth=1.6 if name == "model" else 1.0)
        if name == "model":
            bottom.fill_between(
                returns.index, strategy.drawdown(returns), color="tab:red", alpha=0.4
            )
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
    """`table` drawn as a PNG image."""
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

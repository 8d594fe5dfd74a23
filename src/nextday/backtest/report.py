"""What the backtest writes: the predictions and daily series (Parquet), the plots (PNG),
`backtest.html` (rendered by `nextday.pages.html`), the rows for the store's
`model_predictions` and the line the step logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.backtest import breakdowns, plots, sections
from nextday.backtest.judge import Backtest
from nextday.backtest.metrics import MODEL, ORACLE, ZERO, coverage_name, forecast_prefix
from nextday.backtest.settings import BacktestSettings
from nextday.contracts import metrics as metric_names
from nextday.contracts.metrics import level_tag
from nextday.evaluation import claims, signal_plots
from nextday.evaluation.metrics import ic_undefined_reason
from nextday.pages import html as html_page
from nextday.pages.markdown import digits_to_tell_apart

PREDICTIONS = "predictions.parquet"
DAILY = "daily.parquet"
CAPACITY = "capacity.csv"
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
    backtest.capacity.to_csv(folder / CAPACITY, index=False)
    paths = pictures(backtest, settings, folder)
    (folder / PAGE).write_text(page(backtest, subject, settings, checks, paths))
    return folder


def pictures(backtest: Backtest, settings: BacktestSettings, folder: Path) -> dict[str, Path]:
    """Every PNG of the page, by name."""
    model = backtest.signals[MODEL]
    paths = {
        "equity": plots.equity(
            {k: v["net"] for k, v in backtest.books.items()} | {"market": backtest.market},
            folder / "equity_drawdown.png",
        ),
        "rolling": plots.rolling(backtest.daily, folder / "rolling_mae_ic.png"),
        "coverage": plots.coverage(
            backtest.daily, settings.level, folder / "coverage.png", backtest.online_rule
        ),
        "capacity": plots.capacity(backtest.capacity, folder / "capacity.png"),
        "glance": plots.comparison(sections.glance(backtest), folder / "at_a_glance.png"),
        "regimes": plots.table_png(
            backtest.tables[breakdowns.MARKET_REGIME], folder / "regimes.png", "By market regime"
        ),
        "ic_decay": signal_plots.ic_decay(backtest.signals, folder / "ic_decay.png"),
        "quantiles": signal_plots.quantile_returns(model, folder / "quantile_returns.png"),
        "monthly_ic": signal_plots.monthly_ic(model, folder / "monthly_ic.png"),
    }
    if model.groups is not None:
        paths["group_ic"] = signal_plots.group_ic(model, folder / "group_ic.png")
    return paths


def headline(backtest: Backtest, settings: BacktestSettings) -> str:
    """One line for the log: the forecast, the interval and the strategy."""
    metrics = backtest.metrics
    leak = " (LIKELY LEAK: Sharpe above the limit)" if backtest.leak else ""
    return (
        f"{settings.mode}, {int(metrics['bt_days'])} days: MAE {metrics['bt_mae']:.5f} vs zero "
        f"{metrics['bt_baseline_zero_mae']:.5f}, IC {metrics.get('bt_ic', np.nan):.4f}, "
        f"coverage {metrics[coverage_name(settings.level)]:.3f}, strategy Sharpe "
        f"{metrics[metric_names.BT_SHARPE]:.2f} after costs{leak}"
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
    """backtest.html: the verdict, the one-glance comparison, then forecasts, the signal,
    trading, time, regimes, volatility, (the surprise,) the leak guard and (refit) the folds."""
    tables = backtest.tables
    parts = {
        "Verdict": _verdict(backtest, subject, settings),
        "At a glance": [
            "Every signal traded the same way on the same days, and the market.",
            sections.glance(backtest).reset_index(names="signal"),
            paths["glance"],
        ],
        "Forecasts": ["Every forecast on the same rows, day by day.", _forecasts(backtest)],
        "Signal": sections.signal(backtest, paths),
        "Trading view": sections.trading(backtest, settings, paths),
        "Over time": [paths["rolling"], _online(backtest, settings), paths["coverage"]],
        "By market regime": [
            f"Regime from the market's trailing {settings.regime_window}-day return over its "
            f"volatility (threshold {settings.regime_threshold}).",
            tables[breakdowns.MARKET_REGIME],
            *([tables[breakdowns.TRUE_REGIME]] if breakdowns.TRUE_REGIME in tables else []),
        ],
        "By volatility": [tables[breakdowns.VOLATILITY]],
    }
    if breakdowns.SURPRISE in tables:
        parts["By earnings surprise"] = [tables[breakdowns.SURPRISE]]
    parts["Leak guard"] = [
        "Features recomputed from the raw data as they stood at each sampled close: identical "
        "(a difference fails the run).",
        checks,
    ]
    if backtest.folds is not None:
        parts["Refit folds"] = [backtest.folds]
    return html_page.render(f"Backtest: {subject.name} model", parts)


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
        f"{settings.execution}, capital ${settings.capital:,.0f} with spread and impact costs.",
        f"MAE {metrics['bt_mae']:.{digits}g} vs the zero predictor's "
        f"{metrics['bt_baseline_zero_mae']:.{digits}g}: {comparison}.",
        f"IC {ic}; coverage of the {settings.level:.0%} interval "
        f"{metrics[coverage_name(settings.level)]:.3f}.",
        f"Long-short Sharpe after costs {metrics[metric_names.BT_SHARPE]:.2f} "
        f"({settings.ci_level:.0%} interval [{metrics.get(metric_names.BT_SHARPE_CI_LOW, np.nan):.2f}, "
        f"{metrics.get(metric_names.BT_SHARPE_CI_HIGH, np.nan):.2f}]; before costs "
        f"{metrics['bt_strategy_gross_sharpe']:.2f}, turnover "
        f"{metrics['bt_strategy_turnover']:.2f} a day); the market's "
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


def _online(backtest: Backtest, settings: BacktestSettings) -> str:
    """The static interval beside the online rule's replay."""
    metrics, tag = backtest.metrics, level_tag(settings.level)

    def figures(prefix: str) -> str:
        return (
            f"coverage {metrics.get(f'{prefix}_coverage_{tag}', np.nan):.3f}, width "
            f"{metrics.get(f'{prefix}_width_{tag}', np.nan):.4f}, interval score "
            f"{metrics.get(f'{prefix}_interval_score_{tag}', np.nan):.4f}"
        )

    return (
        f"The {settings.level:.0%} interval as served (static): {figures('bt_static')}. Replayed "
        f"through the online rule ({backtest.online_rule}), each day's interval "
        f"from the outcomes of the days before it only: {figures('bt_online')}."
    )

"""`backtest`: walk-forward predictions with no future data, judged as forecasts and as a
long-short strategy beside the baselines and the market, broken down by regime.

Reads a registered version or alias, or a run's model (`backtest.model`), and the prepare run
it was trained from. Writes `bt_*` metrics, PNG plots, the daily series (Parquet), the
predictions (Parquet; optionally into the store's `model_predictions`), and `backtest.html`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from nextday.backtest import breakdowns, guard, report, strategy, walkforward
from nextday.evaluation import claims
from nextday.evaluation.diebold_mariano import diebold_mariano
from nextday.evaluation.intervals import interval_metrics
from nextday.evaluation.metrics import daily_ic, ic_undefined_reason, point_metrics, prefixed
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import ModelSpec, model_spec
from nextday.reports import html as html_page
from nextday.reports.markdown import digits_to_tell_apart
from nextday.steps.inputs import load_prepared, model_uri
from nextday.steps.prepare import open_store
from nextday.tracking import INPUT_TAG, artifact_dir, step_run

log = logging.getLogger(__name__)


def run_backtest(cfg: DictConfig) -> str:
    from nextday.inference.model import ModelInference
    from nextday.models.data import arrange

    settings = cfg.backtest
    name = model_spec(cfg).name
    with step_run(cfg, "backtest", model=name) as run, artifact_dir(cfg) as out:
        started = time.perf_counter()
        uri = model_uri(cfg, name, settings.model)
        inference = ModelInference(uri, device="cpu")
        spec = ModelSpec.from_dict(inference.metadata["hyperparameters"])
        if spec.name != name:
            raise ValueError(f"{uri} is a {spec.name} model, not model={name}")
        prepare_id = cfg.inputs.get("prepare_run_id") or inference.metadata["runs"]["prepare"]
        mlflow.set_tags(
            {
                f"{INPUT_TAG}prepare": prepare_id,
                f"{INPUT_TAG}export": inference.metadata["runs"]["export"],
                "nextday.backtest.model": uri,
                "nextday.backtest.version": str(inference.version),
                "nextday.backtest.mode": str(settings.mode),
            }
        )
        prepared = load_prepared(prepare_id, out / "inputs")
        dataset = prepared.dataset
        data = arrange(spec, dataset, prepared.truth)
        segments = list(settings.segments)
        period = np.sort(dataset.loc[dataset["split"].isin(segments), "date"].unique())
        if len(period) == 0:
            raise ValueError(f"backtest.segments={segments} hold no dates")

        if settings.mode == "fixed":
            train_end = dataset.loc[dataset["split"] == "train", "date"].max()
            guard.check_window(train_end, period[0], f"{uri} (trained on the train segment)")
            processor = FeatureProcessor.from_dict(inference.metadata["processor"])
            baselines = _baselines(cfg, spec, data, processor)
            result = walkforward.fixed(inference, data, segments, baselines)
        elif settings.mode == "refit":
            result = walkforward.refit(spec, cfg, dataset, prepared.truth, period, out / "folds")
        else:
            raise ValueError(f"backtest.mode={settings.mode!r}: expected fixed or refit")
        rows = result.rows.merge(
            dataset[["symbol", "date", "vol_20d", "eps_surprise"]],
            on=["symbol", "date"],
            how="left",
        )
        checks = _point_in_time(cfg, spec, rows, dataset)
        predict_seconds = time.perf_counter() - started

        realized = strategy.realized_returns(dataset, str(settings.execution))
        realized = pd.Series(realized, index=pd.MultiIndex.from_frame(dataset[["symbol", "date"]]))
        rows["realized"] = realized.reindex(
            pd.MultiIndex.from_frame(rows[["symbol", "date"]])
        ).to_numpy()
        signals = {"model": rows["prediction"].to_numpy(), **result.signals}
        if "true_mean" in rows and rows["true_mean"].notna().all():
            signals["oracle"] = rows["true_mean"].to_numpy()
        books = {
            label: strategy.long_short(
                rows["symbol"], rows["date"], signal, rows["realized"].to_numpy(),
                float(settings.quantile), float(settings.cost_bps),
            )
            for label, signal in signals.items()
        }  # fmt: skip
        market = strategy.equal_weight(rows["date"], rows["realized"].to_numpy())

        metrics = _metrics(rows, books, market, float(settings.level))
        for label, signal in result.signals.items():
            metrics.update(
                prefixed(
                    point_metrics(signal, rows["label"].to_numpy(), rows["date"].to_numpy()),
                    f"bt_baseline_{label}",
                )
            )
        regimes = _regimes(cfg, dataset, prepare_id, out)
        rows = rows.merge(regimes, on="date", how="left")
        daily = _daily(rows, books["model"], market, int(settings.rolling_days))
        tables = _breakdowns(rows, books["model"], spec)
        leak = metrics["bt_strategy_sharpe"] > float(settings.leak_sharpe)
        metrics["bt_leak_flag"] = float(leak)
        metrics["bt_days"] = float(len(period))
        metrics["bt_seconds"] = time.perf_counter() - started
        metrics["bt_predict_seconds"] = predict_seconds
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})

        folder = out / "backtest"
        folder.mkdir(exist_ok=True)
        rows.to_parquet(folder / "predictions.parquet", index=False)
        daily.to_parquet(folder / "daily.parquet")
        equity = {k: v["net"] for k, v in books.items()} | {"market": market}
        paths = report.plots(daily, equity, folder, float(settings.level))
        paths["regimes"] = report.table_png(
            tables["market regime"], folder / "regimes.png", "By market regime"
        )
        html = _html(
            spec,
            uri,
            inference,
            settings,
            metrics,
            books,
            market,
            tables,
            checks,
            result,
            paths,
            leak,
            float(cfg.evaluation.significance),
        )
        (folder / "backtest.html").write_text(html)
        mlflow.log_artifacts(str(folder), "backtest")
        if settings.write_predictions:
            _write_predictions(cfg, rows, inference)
        log.info(
            "backtest %s (%s, %d days): MAE %.5f vs zero %.5f, IC %.4f, coverage %.3f, "
            "strategy Sharpe %.2f after costs%s -> run %s",
            name, settings.mode, len(period), metrics["bt_mae"], metrics["bt_baseline_zero_mae"],
            metrics.get("bt_ic", np.nan), metrics["bt_coverage_80"], metrics["bt_strategy_sharpe"],
            " (LIKELY LEAK: Sharpe above the limit)" if leak else "", run.info.run_id,
        )  # fmt: skip
        return run.info.run_id


def _baselines(cfg, spec, data, processor):
    """Linear and tree baselines fitted on the model's training rows (sampled if many),
    through the model's own feature processor."""
    from nextday.models.baselines import Baselines

    x, y, weight = data.train_flat, data.train.y.astype(np.float64), data.train.weight
    dates, judged = data.train_dates, data.train_judged
    limit = int(cfg.backtest.max_baseline_rows)
    if len(x) > limit:
        take = np.sort(np.random.default_rng(spec.seed).choice(len(x), limit, replace=False))
        x, y, weight, dates, judged = x[take], y[take], weight[take], dates[take], judged[take]
    return Baselines.from_config(processor, cfg.train.baselines, spec.seed).fit(
        x, y, weight, dates, judged
    )


def _point_in_time(cfg, spec, rows: pd.DataFrame, dataset: pd.DataFrame) -> pd.DataFrame:
    """The leak guard on sampled dates, against the raw data in the store."""

    dates = np.sort(rows["date"].unique())
    picks = dates[np.linspace(0, len(dates) - 1, int(cfg.backtest.guard.dates)).astype(int)]
    symbols = list(rows["symbol"].unique())
    store = open_store(cfg)
    last = pd.Timestamp(picks.max())
    ohlcv = store.read("ohlcv", "ts <= :last", {"last": last.to_pydatetime()})
    ohlcv = ohlcv[ohlcv["symbol"].isin(set(dataset["symbol"].unique()))]
    earnings = store.read("earnings")
    earnings = earnings[earnings["symbol"].isin(set(dataset["symbol"].unique()))]
    used = dataset[dataset["symbol"].isin(symbols)]
    return guard.point_in_time(
        used, list(spec.features), ohlcv, earnings, picks, int(cfg.features.max_days_since_earnings)
    )


def _metrics(rows, books, market, level: float) -> dict[str, float]:
    y, dates = rows["label"].to_numpy(), rows["date"].to_numpy()
    out = prefixed(point_metrics(rows["prediction"].to_numpy(), y, dates), "bt")
    out.update(prefixed(point_metrics(np.zeros_like(y), y, dates), "bt_baseline_zero"))
    if "true_mean" in rows and rows["true_mean"].notna().all():
        out.update(prefixed(point_metrics(rows["true_mean"].to_numpy(), y, dates), "bt_oracle"))
    dm = diebold_mariano(rows["prediction"].to_numpy() - y, -y, dates, loss="mae")
    out["bt_dm_zero_mae_p"] = dm.p_better
    ic = daily_ic(rows["prediction"].to_numpy(), y, dates)
    out["bt_icir"] = float(ic.mean() / ic.std()) if len(ic) > 1 and ic.std() > 0 else np.nan
    tag = round(level * 100)
    out.update(
        {
            f"bt_{k}": v
            for k, v in interval_metrics(
                rows["p10"].to_numpy(), rows["p90"].to_numpy(), y, level
            ).items()
        }
    )
    out.setdefault(f"bt_coverage_{tag}", np.nan)
    for label, book in books.items():
        prefix = "bt_strategy" if label == "model" else f"bt_{label}_strategy"
        out.update(prefixed(strategy.summary(book["net"], book["turnover"]), prefix))
        out[f"{prefix}_gross_sharpe"] = strategy.summary(book["gross"]).get("sharpe", np.nan)
    out.update(prefixed(strategy.summary(market), "bt_market"))
    return out


def _regimes(cfg, dataset: pd.DataFrame, prepare_id: str, out: Path) -> pd.DataFrame:
    """Per date: the market regime from trailing return and volatility, and on synthetic
    data the generator's true regime."""
    settings = cfg.backtest.regime
    market_return = dataset.groupby("date")["mkt_ret_1d"].first()
    frame = (
        breakdowns.market_regimes(market_return, int(settings.window), float(settings.threshold))
        .rename("market_regime")
        .reset_index()
    )
    frame.columns = ["date", "market_regime"]
    names = {f.path for f in mlflow.MlflowClient().list_artifacts(prepare_id, "reports")}
    if "reports/regimes.csv" in names:
        path = mlflow.artifacts.download_artifacts(
            run_id=prepare_id, artifact_path="reports/regimes.csv", dst_path=str(out / "inputs")
        )
        true = pd.read_csv(path, parse_dates=["ts"]).rename(
            columns={"ts": "date", "regime": "true_regime"}
        )
        true["date"] = true["date"].astype(frame["date"].dtype)
        frame = frame.merge(true, on="date", how="left")
    return frame


def _daily(rows, book, market, window: int) -> pd.DataFrame:
    """Per day and cumulative (all days so far) forecast metrics, rolling ones for the plots,
    the strategy's book and the regimes."""
    moved = rows["label"] != 0
    rows = rows.assign(
        abs_error=(rows["prediction"] - rows["label"]).abs(),
        squared_error=(rows["prediction"] - rows["label"]) ** 2,
        abs_zero=rows["label"].abs(),
        right_direction=(np.sign(rows["prediction"]) == np.sign(rows["label"])).where(moved),
        inside=((rows["p10"] <= rows["label"]) & (rows["label"] <= rows["p90"])).astype(float),
    )
    grouped = rows.groupby("date")
    daily = pd.DataFrame(
        {
            "rows": grouped.size(),
            "mae": grouped["abs_error"].mean(),
            "rmse": np.sqrt(grouped["squared_error"].mean()),
            "dir_acc": grouped["right_direction"].mean(),
            "zero_mae": grouped["abs_zero"].mean(),
            "coverage": grouped["inside"].mean(),
        }
    )
    daily["ic"] = daily_ic(
        rows["prediction"].to_numpy(), rows["label"].to_numpy(), rows["date"].to_numpy()
    )
    # cumulative: over every row (or, for IC, every day) up to and including the date
    totals = grouped[["abs_error", "squared_error", "inside"]].sum().cumsum()
    counts = grouped.size().cumsum()
    daily["cumulative_mae"] = totals["abs_error"] / counts
    daily["cumulative_rmse"] = np.sqrt(totals["squared_error"] / counts)
    daily["cumulative_dir_acc"] = (
        grouped["right_direction"].sum().cumsum() / grouped["right_direction"].count().cumsum()
    )
    daily["cumulative_coverage"] = totals["inside"] / counts
    daily["cumulative_ic"] = daily["ic"].expanding().mean()
    daily["cumulative_icir"] = (
        daily["ic"].expanding(min_periods=2).mean() / daily["ic"].expanding(min_periods=2).std()
    )
    daily["rolling_mae"] = daily["mae"].rolling(window, min_periods=1).mean()
    daily["rolling_zero_mae"] = daily["zero_mae"].rolling(window, min_periods=1).mean()
    daily["rolling_ic"] = daily["ic"].rolling(window, min_periods=1).mean()
    daily["rolling_coverage"] = daily["coverage"].rolling(window, min_periods=1).mean()
    daily = daily.join(book.add_prefix("strategy_"), how="left")
    daily["market"] = market
    daily["strategy_drawdown"] = strategy.drawdown(daily["strategy_net"].fillna(0.0))
    regimes = grouped[[c for c in ("market_regime", "true_regime") if c in rows]].first()
    return daily.join(regimes)


def _breakdowns(rows, book, spec) -> dict[str, pd.DataFrame]:
    tables = {"market regime": breakdowns.table(rows, "market_regime")}
    sharpe = {
        regime: strategy.summary(book["net"].reindex(dates.unique())).get("sharpe", np.nan)
        for regime, dates in rows.groupby("market_regime")["date"]
    }
    tables["market regime"]["strategy_sharpe"] = tables["market regime"]["market_regime"].map(
        sharpe
    )
    if "true_regime" in rows and rows["true_regime"].notna().any():
        tables["true regime (synthetic)"] = breakdowns.table(rows, "true_regime")
    rows = rows.assign(vol_bucket=breakdowns.volatility_buckets(rows["vol_20d"].to_numpy()))
    tables["20-day volatility quintile"] = breakdowns.table(rows, "vol_bucket")
    if spec.name == "earnings":
        rows = rows.assign(surprise=breakdowns.surprise_buckets(rows["eps_surprise"].to_numpy()))
        tables["EPS surprise"] = breakdowns.table(rows, "surprise")
    return tables


def _trading_table(books, market) -> pd.DataFrame:
    table = []
    for label, book in books.items():
        table.append({"signal": label, **strategy.summary(book["net"], book["turnover"])})
    table.append({"signal": "market (equal weight, long only)", **strategy.summary(market)})
    return pd.DataFrame(table).drop(columns="days")


def _forecast_table(metrics: dict) -> pd.DataFrame:
    out = []
    labels = [("model", "bt"), ("zero", "bt_baseline_zero"), ("linear", "bt_baseline_linear")]
    labels += [("tree", "bt_baseline_tree"), ("oracle", "bt_oracle")]
    for label, prefix in labels:
        if f"{prefix}_mae" in metrics:
            out.append(
                {
                    "forecast": label,
                    **{
                        m: metrics.get(f"{prefix}_{m}", np.nan)
                        for m in ("mae", "rmse", "dir_acc", "ic", "skill")
                    },
                }
            )
    return pd.DataFrame(out)


def _html(
    spec,
    uri,
    inference,
    settings,
    metrics,
    books,
    market,
    tables,
    checks,
    result,
    paths,
    leak,
    significance,
) -> str:
    p_zero = metrics.get("bt_dm_zero_mae_p")
    comparison = claims.versus("the zero predictor", p_zero, significance)
    if claims.outcome(p_zero, significance) != claims.BEATS:
        comparison = f"<b>{comparison}</b>"
    digits = digits_to_tell_apart([metrics["bt_mae"], metrics["bt_baseline_zero_mae"]])
    ic_reason = ic_undefined_reason(result.rows["date"].to_numpy())
    ic = (
        ic_reason
        if ic_reason
        else f"{metrics.get('bt_ic', float('nan')):.4f} (ICIR {metrics.get('bt_icir', float('nan')):.3f})"
    )
    verdict = [
        f"{spec.name} model ({spec.arch}), {uri} (version {inference.version}), mode "
        f"<b>{settings.mode}</b>, {int(metrics['bt_days'])} trading days, execution "
        f"{settings.execution}, costs {settings.cost_bps} bp per side.",
        f"MAE {metrics['bt_mae']:.{digits}g} vs the zero predictor's "
        f"{metrics['bt_baseline_zero_mae']:.{digits}g}: {comparison}.",
        f"IC {ic}; coverage of the 80% interval {metrics['bt_coverage_80']:.3f}.",
        f"Long-short Sharpe after costs {metrics['bt_strategy_sharpe']:.2f} "
        f"(before costs {metrics['bt_strategy_gross_sharpe']:.2f}); the market's "
        f"{metrics.get('bt_market_sharpe', float('nan')):.2f}.",
    ]
    if leak:
        verdict.append(
            f"<span class='warn'>A Sharpe above {settings.leak_sharpe} after costs on daily "
            "equity returns is not credible: treat this as a likely leak until shown otherwise.</span>"
        )
    sections = {
        "Verdict": verdict,
        "Forecasts": ["Every forecast on the same rows, day by day.", _forecast_table(metrics)],
        "Trading view": [
            f"Each day: long the top {settings.quantile:.0%} and short the bottom "
            f"{settings.quantile:.0%} of the signal, equal weight; the baselines' signals and "
            "the oracle (on synthetic data) trade the same way.",
            _trading_table(books, market),
            paths["equity"],
        ],
        "Over time": [paths["rolling"], paths["coverage"]],
        "By market regime": [
            f"Regime from the market's trailing {settings.regime.window}-day return over its "
            f"volatility (threshold {settings.regime.threshold}).",
            tables["market regime"],
            *([tables["true regime (synthetic)"]] if "true regime (synthetic)" in tables else []),
        ],
        "By volatility": [tables["20-day volatility quintile"]],
    }
    if "EPS surprise" in tables:
        sections["By earnings surprise"] = [tables["EPS surprise"]]
    sections["Leak guard"] = [
        "Features recomputed from the raw data as they stood at each sampled close: identical "
        "(a difference fails the run).",
        checks,
    ]
    if result.folds is not None:
        sections["Refit folds"] = [result.folds]
    return html_page.render(f"Backtest: {spec.name} model", sections)


def _write_predictions(cfg, rows: pd.DataFrame, inference) -> None:

    frame = pd.DataFrame(
        {
            "symbol": rows["symbol"],
            "ts": rows["date"],
            "model_name": inference.name,
            "model_version": str(inference.version),
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
    written = open_store(cfg).upsert("model_predictions", frame)
    log.info("backtest: %d predictions upserted into model_predictions", written)

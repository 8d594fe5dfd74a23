"""`monitor`: logged predictions get their actuals, errors, rolling accuracy, coverage and
drift against the training reference saved at export; thresholds raise alerts.

Reads the store's `model_predictions` of one registered version (`monitor.model`, default the
production version), the store's bars (for actuals) and `feature_history` (for the features of
the predicted rows). Writes the actuals and errors back (an upsert), the drift statistics into
`model_drift` (the dashboard's drift panel), metrics and `alerts.json` to the run, and the
dashboard's panels as one HTML page (`monitor.html`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from nextday.data.store import Store
from nextday.evaluation.metrics import daily_ic, ic_undefined_reason
from nextday.models.spec import model_spec
from nextday.monitoring import drift
from nextday.reports import html as html_page
from nextday.steps.inputs import model_uri
from nextday.steps.prepare import open_store
from nextday.tracking import INPUT_TAG, artifact_dir, step_run

log = logging.getLogger(__name__)

RETRAIN = (
    "retrain on data that includes the recent period (`python -m nextday main`, or prepare, "
    "train, calibrate and export); the export gate decides whether the new version serves"
)


def fill_actuals(store: Store, predictions: pd.DataFrame) -> pd.DataFrame:
    """actual = close[next bar] / close[t] - 1 of the symbol, where the next close is known;
    error = predicted - actual. Returns the predictions with both filled where possible."""
    symbols = list(predictions["symbol"].unique())
    bars = store.read(
        "ohlcv", "ts >= :first", {"first": pd.Timestamp(predictions["ts"].min()).to_pydatetime()}
    )
    bars = bars[bars["symbol"].isin(symbols)].sort_values(["symbol", "ts"])
    bars["actual"] = bars.groupby("symbol")["close"].shift(-1) / bars["close"] - 1.0
    bars["ts"] = pd.to_datetime(bars["ts"]).dt.normalize()
    known = bars.dropna(subset=["actual"]).set_index(["symbol", "ts"])["actual"]
    key = pd.MultiIndex.from_arrays([predictions["symbol"], pd.to_datetime(predictions["ts"])])
    filled = predictions.copy()
    looked_up = pd.Series(known.reindex(key).to_numpy(), index=filled.index)
    filled["actual"] = pd.to_numeric(filled["actual"]).fillna(looked_up)
    filled["error"] = filled["predicted"] - filled["actual"]
    return filled


def alerts(summary: dict, drifted: pd.DataFrame, settings) -> list[dict]:
    """Every threshold crossed, as {kind, message, value, limit}."""
    out = []
    limit = float(settings.mae_multiple) * summary["val_mae"]
    if np.isfinite(summary["rolling_mae"]) and summary["rolling_mae"] > limit:
        out.append(
            {
                "kind": "accuracy",
                "message": f"rolling {settings.window_days}-day MAE {summary['rolling_mae']:.5f} "
                f"is above {settings.mae_multiple} x the validation MAE ({limit:.5f})",
                "value": summary["rolling_mae"],
                "limit": limit,
            }
        )
    low, high = settings.coverage_band
    coverage = summary["rolling_coverage"]
    if np.isfinite(coverage) and not low <= coverage <= high:
        out.append(
            {
                "kind": "calibration",
                "message": f"coverage of the 80% interval over {settings.coverage_days} days is "
                f"{coverage:.3f}, outside {low}-{high}",
                "value": coverage,
                "limit": low if coverage < low else high,
            }
        )
    for row in drifted.itertuples():
        out.append(
            {
                "kind": "prediction drift" if row.feature == "prediction" else "feature drift",
                "message": f"{row.feature}: PSI {row.psi:.3f} > its limit {row.psi_limit:.3f} "
                f"and KS p = {row.ks_p:.2g} < {settings.ks_pvalue} over the last "
                f"{settings.drift_days} days, against the training reference",
                "value": row.psi,
                "limit": row.psi_limit,
            }
        )
    return out


def drift_table(store: Store, predictions: pd.DataFrame, reference: dict, settings) -> pd.DataFrame:
    """PSI and KS of every feature (from feature_history) and of the prediction, on the last
    `drift_days` dates with predictions."""
    dates = np.sort(pd.to_datetime(predictions["ts"]).unique())[-int(settings.drift_days) :]
    recent = predictions[pd.to_datetime(predictions["ts"]).isin(dates)]
    features = store.read(
        "feature_history", "ts >= :first", {"first": pd.Timestamp(dates[0]).to_pydatetime()}
    )
    features["ts"] = pd.to_datetime(features["ts"])
    live = (
        recent[["symbol", "ts"]]
        .assign(ts=pd.to_datetime(recent["ts"]))
        .merge(features, on=["symbol", "ts"], how="inner")
    )
    rows = []
    values = {name: live[name].to_numpy(float) for name in reference["features"] if name in live}
    values["prediction"] = recent["predicted"].to_numpy(float)
    for name, data in values.items():
        ref = reference["prediction"] if name == "prediction" else reference["features"][name]
        statistic, p_value = drift.ks(ref, data)
        rows.append(
            {
                "feature": name,
                "psi": drift.psi(ref, data),
                "psi_limit": psi_limit(ref, settings),
                "ks_stat": statistic,
                "ks_p": p_value,
                "rows": int(np.isfinite(data).sum()),
            }
        )
    return pd.DataFrame(rows)


def psi_limit(ref: dict, settings) -> float:
    """A feature's drift limit: `window_margin` times the largest PSI any window of its
    training period showed against the whole period (its natural spread), and at least
    `psi_limit`. A reference without windows (older exports) gets `psi_limit`."""
    windows = ref.get("window_psi") or [0.0]
    return max(float(settings.psi_limit), float(settings.window_margin) * max(windows))


def run_monitor(cfg: DictConfig) -> str:
    from nextday.inference.model import ModelInference

    settings = cfg.monitor
    name = model_spec(cfg).name
    with step_run(cfg, "monitor", model=name) as run, artifact_dir(cfg) as out:
        uri = model_uri(cfg, name, settings.model)
        model = ModelInference(uri, device="cpu")
        if "reference" not in model.metadata["files"]:
            raise ValueError(
                f"{model.name} version {model.version} was exported without the training "
                "reference (reference.json) the monitor compares with: export it again"
            )
        reference = json.loads((model.folder / model.metadata["files"]["reference"]).read_text())
        mlflow.set_tags(
            {
                "nextday.monitor.model": uri,
                "nextday.monitor.version": model.version,
                f"{INPUT_TAG}export": model.metadata["runs"]["export"],
            }
        )
        store = open_store(cfg)
        store.create()
        predictions = store.read(
            "model_predictions",
            "model_name = :name and model_version = :version",
            {"name": model.name, "version": str(model.version)},
        )
        if settings.as_of is not None:  # replay: what the monitor knew on that date
            predictions = predictions[predictions["ts"] < pd.Timestamp(str(settings.as_of))]
        if predictions.empty:
            raise ValueError(
                f"no logged predictions of {model.name} version {model.version} in the store: "
                "log them with ModelInference(..., logger=PredictionLogger(store_url)) or "
                "`backtest.write_predictions=true`"
            )
        before = int(predictions["actual"].notna().sum())
        predictions = fill_actuals(store, predictions)
        store.upsert("model_predictions", predictions)
        daily = _daily(predictions, int(settings.window_days), int(settings.coverage_days))
        judged = daily.dropna(subset=["mae"])
        summary = {
            "rows": len(predictions),
            "rows_with_actual": int(predictions["actual"].notna().sum()),
            "actuals_filled": int(predictions["actual"].notna().sum()) - before,
            "val_mae": float(reference["val_mae"]),
            "rolling_mae": float(judged["rolling_mae"].iloc[-1]) if len(judged) else np.nan,
            "rolling_coverage": float(judged["rolling_coverage"].iloc[-1])
            if len(judged)
            else np.nan,
            "rolling_ic": float(judged["rolling_ic"].iloc[-1]) if len(judged) else np.nan,
            "latency_ms_p50": float(predictions["latency_ms"].median()),
        }
        if not np.isfinite(summary["rolling_ic"]):
            known = predictions.dropna(subset=["actual"])
            log.info("monitor: IC %s", ic_undefined_reason(known["ts"]) or "undefined")
        table = drift_table(store, predictions, reference, settings)
        enough = table["rows"] >= int(settings.min_rows)
        drifted = table[
            enough
            & (table["psi"] > table["psi_limit"])
            & (table["ks_p"] < float(settings.ks_pvalue))
        ]
        raised = alerts(summary, drifted, settings)
        run_ts = pd.Timestamp.now().floor("s")
        if reference.get("window_days", settings.drift_days) != settings.drift_days:
            log.warning(
                "monitor: drift_days=%s but the export measured its windows over %s days: "
                "the per-feature limits fit the export's window",
                settings.drift_days, reference["window_days"],
            )  # fmt: skip
        store.upsert(
            "model_drift",
            table.drop(columns="psi_limit").assign(
                run_ts=run_ts, model_name=model.name, model_version=str(model.version)
            ),
        )
        metrics = {f"monitor_{k}": float(v) for k, v in summary.items() if np.isfinite(v)}
        metrics["monitor_psi_max"] = float(table["psi"].max())
        metrics["monitor_drifted"] = float(len(drifted))
        metrics["monitor_alerts"] = float(len(raised))
        mlflow.log_metrics(metrics)
        mlflow.set_tag("nextday.monitor.alerts", ", ".join(a["kind"] for a in raised) or "none")
        folder = out / "monitor"
        folder.mkdir(exist_ok=True)
        (folder / "alerts.json").write_text(
            json.dumps({"alerts": raised, "recommendation": RETRAIN if raised else None}, indent=2)
        )
        daily.to_csv(folder / "daily.csv")
        table.to_csv(folder / "drift.csv", index=False)
        paths = _plots(predictions, daily, table, summary, settings, folder)
        (folder / "monitor.html").write_text(_page(model, summary, raised, table, paths, settings))
        mlflow.log_artifacts(str(folder), "monitor")
        for alert in raised:
            log.warning("monitor ALERT (%s): %s", alert["kind"], alert["message"])
        if raised:
            log.warning("monitor: recommendation: %s", RETRAIN)
        log.info(
            "monitor %s v%s: %d predictions (%d with actuals), rolling MAE %.5f (validation "
            "%.5f), coverage %.3f, max PSI %.3f, %d alert(s) -> run %s",
            model.name, model.version, summary["rows"], summary["rows_with_actual"],
            summary["rolling_mae"], summary["val_mae"], summary["rolling_coverage"],
            metrics["monitor_psi_max"], len(raised), run.info.run_id,
        )  # fmt: skip
        return run.info.run_id


def _daily(predictions: pd.DataFrame, window: int, coverage_window: int) -> pd.DataFrame:
    frame = predictions.assign(
        ts=pd.to_datetime(predictions["ts"]),
        abs_error=predictions["error"].abs(),
        inside=(
            (predictions["p10"] <= predictions["actual"])
            & (predictions["actual"] <= predictions["p90"])
        )
        .astype(float)
        .where(predictions["actual"].notna()),
    )
    grouped = frame.groupby("ts")
    daily = pd.DataFrame(
        {
            "rows": grouped.size(),
            "mae": grouped["abs_error"].mean(),
            "coverage": grouped["inside"].mean(),
            "latency_ms_p50": grouped["latency_ms"].median(),
        }
    )
    known = frame.dropna(subset=["actual"])
    # the same cross-sectional rule as every step: dates with too few symbols have no IC
    daily["ic"] = daily_ic(
        known["predicted"].to_numpy(float), known["actual"].to_numpy(float), known["ts"].to_numpy()
    )
    judged = daily.dropna(subset=["mae"])
    daily["rolling_mae"] = judged["mae"].rolling(window, min_periods=1).mean()
    daily["rolling_ic"] = judged["ic"].rolling(window, min_periods=1).mean()
    daily["rolling_coverage"] = judged["coverage"].rolling(coverage_window, min_periods=1).mean()
    return daily


def _plots(predictions, daily, table, summary, settings, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    def save(figure, name):
        figure.tight_layout()
        figure.savefig(folder / name, dpi=90)
        plt.close(figure)
        paths.append(folder / name)

    figure, axis = plt.subplots(figsize=(9, 3))
    axis.plot(daily["rolling_mae"], label=f"rolling {settings.window_days}-day MAE")
    axis.axhline(summary["val_mae"], color="grey", linestyle="--", label="validation MAE")
    axis.axhline(
        float(settings.mae_multiple) * summary["val_mae"],
        color="tab:red",
        linestyle=":",
        label="alert",
    )
    axis.legend(fontsize=8)
    save(figure, "rolling_mae.png")
    known = predictions.dropna(subset=["actual"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.scatter(known["predicted"], known["actual"], s=3, alpha=0.3)
    left.set(xlabel="predicted", ylabel="actual", title="prediction vs actual")
    right.hist(known["error"], bins=60)
    right.set(xlabel="error", title="error histogram")
    save(figure, "scatter_errors.png")
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    left.plot(daily["latency_ms_p50"])
    left.set(title="inference latency p50 (ms)")
    right.plot(daily["rolling_coverage"])
    low, high = settings.coverage_band
    right.axhspan(low, high, color="tab:green", alpha=0.15)
    right.set(title=f"coverage of the 80% interval ({settings.coverage_days} days)", ylim=(0, 1))
    save(figure, "latency_coverage.png")
    figure, axis = plt.subplots(figsize=(9, 4))
    ordered = table.sort_values("psi")
    axis.barh(ordered["feature"], ordered["psi"])
    axis.scatter(ordered["psi_limit"], ordered["feature"], color="tab:red", marker="|", s=200)
    axis.set(title="drift: PSI against the training reference (| = limit)", xlabel="PSI")
    axis.set_xscale("symlog", linthresh=0.1)
    save(figure, "drift.png")
    return paths


def _page(model, summary, raised, table, paths, settings) -> str:
    status = (
        [f"<span class='warn'>{len(raised)} alert(s).</span> Recommendation: {RETRAIN}."]
        + [f"<span class='warn'>{a['kind']}</span>: {a['message']}" for a in raised]
        if raised
        else ["No alert: accuracy, coverage and drift are within their limits."]
    )
    overview = pd.DataFrame([summary])
    return html_page.render(
        f"Monitor: {model.name} version {model.version}",
        {
            "Status": status,
            "Overview": [overview],
            "Rolling MAE": [paths[0]],
            "Prediction vs actual, errors": [paths[1]],
            "Latency and coverage": [paths[2]],
            "Drift": [paths[3], table.sort_values("psi", ascending=False)],
        },
    )

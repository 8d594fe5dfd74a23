"""What a monitor run leaves behind: alerts.json (the alerts and the recommendation), the
daily series and the drift table as CSV, the plots, and the dashboard's panels as one HTML
page (monitor.html)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from nextday.monitoring.accuracy import LEVEL
from nextday.monitoring.alerts import RETRAIN
from nextday.monitoring.judge import Monitoring
from nextday.monitoring.settings import MonitorSettings
from nextday.pages import html as html_page


def write(
    monitoring: Monitoring, name: str, version: str, settings: MonitorSettings, folder: Path
) -> Path:
    """Every file of the report into `folder` (made if missing) for version `version` of
    registered model `name`; returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alerts.json").write_text(
        json.dumps(
            {
                "alerts": [asdict(a) for a in monitoring.alerts],
                "recommendation": monitoring.recommendation,
            },
            indent=2,
        )
    )
    monitoring.daily.to_csv(folder / "daily.csv")
    monitoring.drift.to_csv(folder / "drift.csv", index=False)
    checked = monitoring.calibration
    checked.by_volatility.to_csv(folder / "coverage_by_volatility.csv")
    checked.by_month.to_csv(folder / "coverage_by_month.csv")
    paths = _plots(monitoring, settings, folder)
    (folder / "monitor.html").write_text(_page(monitoring, name, version, paths))
    return folder


def _plots(monitoring: Monitoring, settings: MonitorSettings, folder: Path) -> list[Path]:
    """The report's five PNGs in `folder`, in the order the page shows them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, columns, size, draw in (
        ("rolling_mae.png", 1, (9, 3), _rolling_mae),
        ("scatter_errors.png", 2, (9, 3.5), _errors),
        ("latency_coverage.png", 2, (9, 3), _latency_coverage),
        ("drift.png", 1, (9, 4), _drift),
        ("calibration.png", 2, (9, 3), _calibration),
    ):
        figure, axes = plt.subplots(1, columns, figsize=size, squeeze=False)
        draw(list(axes[0]), monitoring, settings)
        figure.tight_layout()
        figure.savefig(folder / name, dpi=90)
        plt.close(figure)
        paths.append(folder / name)
    return paths


def _rolling_mae(axes: list, monitoring: Monitoring, settings: MonitorSettings) -> None:
    """The rolling MAE beside the validation MAE and the accuracy alert's limit."""
    (axis,) = axes
    val_mae = monitoring.summary.val_mae
    axis.plot(monitoring.daily["rolling_mae"], label=f"rolling {settings.window_days}-day MAE")
    axis.axhline(val_mae, color="grey", linestyle="--", label="validation MAE")
    axis.axhline(settings.mae_multiple * val_mae, color="tab:red", linestyle=":", label="alert")
    axis.set(
        xlabel="prediction date",
        ylabel="MAE (return)",
        title="Accuracy of the served model: rolling MAE against its limit",
    )
    axis.tick_params(axis="x", labelrotation=30)
    axis.legend(fontsize=8)


def _errors(axes: list, monitoring: Monitoring, settings: MonitorSettings) -> None:  # noqa: ARG001 (a panel)
    """Each judged prediction against its actual, and the errors' histogram."""
    left, right = axes
    known = monitoring.predictions.dropna(subset=["actual"])
    left.scatter(known["predicted"], known["actual"], s=3, alpha=0.3)
    left.set(
        xlabel="predicted next-day return",
        ylabel="actual next-day return",
        title="Prediction vs actual",
    )
    right.hist(known["error"], bins=60)
    right.set(
        xlabel="error: predicted - actual (return)",
        ylabel="predictions (count)",
        title="Error histogram",
    )


def _latency_coverage(axes: list, monitoring: Monitoring, settings: MonitorSettings) -> None:
    """The daily median latency, and the rolling coverage inside its band."""
    left, right = axes
    daily = monitoring.daily
    left.plot(daily["latency_ms_p50"])
    left.set(
        xlabel="prediction date", ylabel="latency p50 (ms)", title="Inference latency, daily median"
    )
    right.plot(daily["rolling_coverage"])
    low, high = settings.coverage_band
    right.axhspan(low, high, color="tab:green", alpha=0.15)
    right.set(
        xlabel="prediction date",
        ylabel="share inside the interval",
        title=f"Coverage of the {LEVEL:.0%} interval ({settings.coverage_days} days)",
        ylim=(0, 1),
    )
    for axis in axes:
        axis.tick_params(axis="x", labelrotation=30)


def _calibration(axes: list, monitoring: Monitoring, settings: MonitorSettings) -> None:
    """The rolling coverage of the static and the served interval beside the nominal level,
    and the online multiplier served each day."""
    left, right = axes
    daily = monitoring.calibration.daily
    for column, label in (("static_coverage", "static"), ("online_coverage", "served (online)")):
        if column in daily:
            left.plot(daily[column], label=label)
    low, high = settings.coverage_band
    left.axhspan(low, high, color="tab:green", alpha=0.15)
    left.axhline(LEVEL, color="grey", linestyle="--", label="nominal")
    left.set(
        xlabel="prediction date",
        ylabel="share inside the interval",
        title=f"Static vs online coverage ({settings.coverage_days} days)",
        ylim=(0, 1),
    )
    left.legend(fontsize=8)
    right.plot(daily.get("multiplier", []))
    right.axhline(1.0, color="grey", linestyle="--")
    right.set(
        xlabel="prediction date",
        ylabel="width multiplier m (1 = static)",
        title="Online multiplier served (daily mean)",
    )
    for axis in axes:
        axis.tick_params(axis="x", labelrotation=30)


def _drift(axes: list, monitoring: Monitoring, settings: MonitorSettings) -> None:  # noqa: ARG001 (a panel)
    """Each feature's PSI against its limit."""
    (axis,) = axes
    ordered = monitoring.drift.sort_values("psi")
    axis.barh(ordered["feature"], ordered["psi"])
    axis.scatter(ordered["psi_limit"], ordered["feature"], color="tab:red", marker="|", s=200)
    axis.set(
        title="Drift: PSI against the training reference (| = limit)",
        xlabel="population stability index (PSI, symlog scale)",
        ylabel="feature",
    )
    axis.set_xscale("symlog", linthresh=0.1)


def _calibration_line(monitoring: Monitoring) -> str:
    metrics = monitoring.calibration.metrics
    if "static_coverage_80" not in metrics:
        return "No prediction has an actual yet."
    line = f"Static interval: coverage {metrics['static_coverage_80']:.3f}"
    if "online_coverage_80" in metrics:
        line += (
            f"; served with the online state: {metrics['online_coverage_80']:.3f} (mean "
            f"multiplier {metrics['online_multiplier']:.3f})"
        )
    else:
        return line + "; this version serves the static interval (no online rule)."
    return line + ". The tables add ACI and PID replayed over every logged day from m = 1."


def _page(monitoring: Monitoring, name: str, version: str, paths: list[Path]) -> str:
    raised = monitoring.alerts
    status = (
        [f"<span class='warn'>{len(raised)} alert(s).</span>"]
        + ([f"Recommendation: {RETRAIN}."] if monitoring.recommendation else [])
        + [f"<span class='warn'>{a.kind}</span>: {a.message}" for a in raised]
        if raised
        else ["No alert: accuracy, coverage and drift are within their limits."]
    )
    if monitoring.schedule is not None:
        status.append(
            f"Daily forecasts: the last as of the close of "
            f"{monitoring.schedule.last_forecast.date()}; "
            f"{len(monitoring.schedule.missing)} session(s) without one."
        )
    return html_page.render(
        f"Monitor: {name} version {version}",
        {
            "Status": status,
            "Overview": [pd.DataFrame([asdict(monitoring.summary)])],
            "Rolling MAE": [paths[0]],
            "Prediction vs actual, errors": [paths[1]],
            "Latency and coverage": [paths[2]],
            "Drift": [paths[3], monitoring.drift.sort_values("psi", ascending=False)],
            "Calibration: static vs online": [
                _calibration_line(monitoring),
                paths[4],
                monitoring.calibration.by_volatility,
                monitoring.calibration.by_month,
            ],
        },
    )

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
from nextday.reports import html as html_page


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
    paths = _plots(monitoring, settings, folder)
    (folder / "monitor.html").write_text(_page(monitoring, name, version, paths))
    return folder


def _plots(monitoring: Monitoring, settings: MonitorSettings, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    daily, summary = monitoring.daily, monitoring.summary
    paths = []

    def save(figure, name):
        figure.tight_layout()
        figure.savefig(folder / name, dpi=90)
        plt.close(figure)
        paths.append(folder / name)

    figure, axis = plt.subplots(figsize=(9, 3))
    axis.plot(daily["rolling_mae"], label=f"rolling {settings.window_days}-day MAE")
    axis.axhline(summary.val_mae, color="grey", linestyle="--", label="validation MAE")
    axis.axhline(
        settings.mae_multiple * summary.val_mae, color="tab:red", linestyle=":", label="alert"
    )
    axis.legend(fontsize=8)
    save(figure, "rolling_mae.png")
    known = monitoring.predictions.dropna(subset=["actual"])
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
    right.set(
        title=f"coverage of the {LEVEL:.0%} interval ({settings.coverage_days} days)", ylim=(0, 1)
    )
    save(figure, "latency_coverage.png")
    figure, axis = plt.subplots(figsize=(9, 4))
    ordered = monitoring.drift.sort_values("psi")
    axis.barh(ordered["feature"], ordered["psi"])
    axis.scatter(ordered["psi_limit"], ordered["feature"], color="tab:red", marker="|", s=200)
    axis.set(title="drift: PSI against the training reference (| = limit)", xlabel="PSI")
    axis.set_xscale("symlog", linthresh=0.1)
    save(figure, "drift.png")
    return paths


def _page(monitoring: Monitoring, name: str, version: str, paths: list[Path]) -> str:
    raised = monitoring.alerts
    status = (
        [f"<span class='warn'>{len(raised)} alert(s).</span> Recommendation: {RETRAIN}."]
        + [f"<span class='warn'>{a.kind}</span>: {a.message}" for a in raised]
        if raised
        else ["No alert: accuracy, coverage and drift are within their limits."]
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
        },
    )

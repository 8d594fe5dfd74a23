"""calibration_report.md and its pictures: what a calibrate run says about its intervals."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from nextday.contracts.metrics import level_tag
from nextday.contracts.pictures import COVERAGE_BY_MONTH, RELIABILITY
from nextday.models.spec import ModelSpec
from nextday.pages import markdown
from nextday.uncertainty.assessment import Assessment
from nextday.uncertainty.online import RULES, STATIC

REPORT = "calibration_report.md"


def write(out: Path, spec: ModelSpec, assessment: Assessment, level: float) -> Path:
    """The pictures (`RELIABILITY`, `COVERAGE_BY_MONTH`), the tables as CSV in report/, and
    calibration_report.md under `out`, which links the pictures beside it."""
    folder = out / "report"
    folder.mkdir(exist_ok=True)
    reliability_plot(assessment.tables, spec, out / RELIABILITY.path)
    coverage_plot(assessment.tables["coverage_by_month"], level, out / COVERAGE_BY_MONTH.path)
    for name, table in assessment.tables.items():
        table.to_csv(folder / f"{name}.csv")
    path = out / REPORT
    path.write_text(markdown_report(spec, assessment, level))
    return path


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def reliability_plot(tables: dict[str, pd.DataFrame], spec: ModelSpec, path: Path) -> Path:
    """Observed against nominal coverage of the central interval, validation and test."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for segment in ("val", "test"):
        table = tables[f"reliability_{segment}"]
        axis.plot(table["nominal"], table["observed"], marker="o", label=segment)
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    axis.set(
        xlabel="nominal coverage of the central interval (share)",
        ylabel="observed coverage (share of actuals inside)",
        title=f"Reliability diagram: {spec.name} model",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axis.legend()
    return _save(figure, path)


# how each interval in the coverage tables is named in the pictures and the text
METHODS = {STATIC: "Static (calibrated)", "aci": "Adaptive conformal (ACI)", "pid": "Conformal PID"}


def coverage_plot(by_month: pd.DataFrame, level: float, path: Path) -> Path:
    """Coverage of each interval in the table (static, ACI, PID) month by month on the test
    rows, beside the nominal `level`: coverage over time."""
    figure, axis = plt.subplots(figsize=(8, 3.5))
    months = [str(m) for m in by_month.index]
    for method, label in METHODS.items():
        if f"{method}_coverage" in by_month:
            axis.plot(months, by_month[f"{method}_coverage"], marker="o", label=label)
    axis.axhline(level, color="grey", linestyle="--", label=f"nominal {level:.0%}")
    axis.tick_params(axis="x", labelrotation=45)
    axis.set(
        xlabel="month (test segment)",
        ylabel="share inside the interval",
        title=f"Coverage of the {level:.0%} interval by month (test)",
        ylim=(0, 1),
    )
    axis.legend(fontsize=8)
    return _save(figure, path)


def markdown_report(spec: ModelSpec, assessment: Assessment, level: float) -> str:
    """The report's text; it shows the pictures `write` draws beside their tables."""
    metrics, tables = assessment.metrics, assessment.tables
    tag = level_tag(level)
    lines = [
        f"# Calibration report: {spec.name} model ({spec.arch})",
        "",
        f"MC dropout with {int(metrics['passes'])} passes; scale model on training rows; split "
        f"conformal on {int(metrics['calibration_rows']):,} validation rows.",
        "",
        "## Headline (test)",
        "",
        f"- Raw MC-dropout {tag}% interval: coverage {metrics[f'raw_test_coverage_{tag}']:.3f}, "
        f"width {metrics[f'raw_test_width_{tag}']:.5f}. Dropout measures model uncertainty only; a "
        "daily return's own noise is far larger.",
        f"- Calibrated: coverage {metrics[f'test_coverage_{tag}']:.3f}, width "
        f"{metrics[f'test_width_{tag}']:.5f}, interval score {metrics[f'test_interval_score_{tag}']:.5f}, "
        f"CRPS {metrics['test_crps']:.5f}.",
        f"- Constant width calibrated on validation: coverage {metrics[f'const_test_coverage_{tag}']:.3f}, "
        f"width {metrics[f'const_test_width_{tag}']:.5f}, interval score "
        f"{metrics[f'const_test_interval_score_{tag}']:.5f}; a constant interval with our test "
        f"coverage would be {metrics[f'const_same_coverage_test_width_{tag}']:.5f} wide.",
    ]
    for rule in RULES:
        if f"test_{rule}_coverage_{tag}" in metrics:
            lines.append(
                f"- {METHODS[rule]}, replayed over the test days from the static "
                f"calibration (each day's interval from earlier outcomes only): coverage "
                f"{metrics[f'test_{rule}_coverage_{tag}']:.3f}, width "
                f"{metrics[f'test_{rule}_width_{tag}']:.5f}, interval score "
                f"{metrics[f'test_{rule}_interval_score_{tag}']:.5f}."
            )
    lines += [
        "",
        "## Pinball losses and CRPS",
        "",
        markdown.table(
            pd.DataFrame(
                {
                    "metric": [k for k in metrics if "pinball" in k or "crps" in k],
                    "value": [v for k, v in metrics.items() if "pinball" in k or "crps" in k],
                }
            )
        ),
    ]
    pictures = {"reliability_test": RELIABILITY, "coverage_by_month": COVERAGE_BY_MONTH}
    for name, title in (
        ("reliability_val", "Reliability (validation)"),
        ("reliability_test", "Reliability (test)"),
        (
            "coverage_by_volatility",
            "Static, ACI and PID by 20-day volatility quintile (test): coverage, width, score",
        ),
        ("coverage_by_month", "Static, ACI and PID by month (test): coverage, width, score"),
        ("dropout_experiment", "Raising inference dropout instead (raw MC interval, validation)"),
    ):
        lines += [
            "",
            f"## {title}",
            "",
            markdown.table(tables[name], index=name.startswith("coverage")),
        ]
        if name in pictures:
            lines += ["", pictures[name].markdown()]
    return "\n".join(lines) + "\n"

"""What `main` did, as one table: each step, ran or reused (or its model skipped), its seconds
and the one figure a person looks at first.

Built from what the step runs logged (their metrics, tags and times), so it needs no
pipeline to test; the step (`steps/main.py`) reads the runs and logs the table as
`summary.md` on main's run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nextday.contracts import metrics as metric_names
from nextday.contracts import tags
from nextday.pages.markdown import digits_to_tell_apart
from nextday.timing import duration

if TYPE_CHECKING:
    from mlflow.entities import Run

SUMMARY = "summary.md"  # on main's run

RAN, REUSED, SKIPPED = "ran", "reused", "skipped"


@dataclass(frozen=True)
class StepOutcome:
    """One row: a step (`label`: step.model, or a skipped model's name) and what its run
    logged. `seconds` is the run's own wall time (a reused run's from when it ran)."""

    label: str
    status: str  # RAN, REUSED or SKIPPED
    seconds: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    run_id: str = ""
    note: str = ""  # why a model was skipped

    @classmethod
    def from_run(cls, label: str, status: str, run: Run) -> StepOutcome:
        """The row of an MLflow run: its metrics, tags and wall time."""
        end = run.info.end_time or run.info.start_time
        return cls(
            label,
            status,
            seconds=(end - run.info.start_time) / 1000,
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            run_id=run.info.run_id,
        )


def _number(metrics: Mapping[str, float], name: str, spec: str) -> str:
    value = metric_names.read_optional(metrics, name)
    return "n/a" if not math.isfinite(value) else format(value, spec)


def _prepare(metrics: Mapping[str, float], run_tags: Mapping[str, str]) -> str:
    first, last = run_tags.get(tags.DATA_FIRST_DATE, "?"), run_tags.get(tags.DATA_LAST_DATE, "?")
    rows = _number(metrics, metric_names.ROWS, ",.0f")
    symbols = _number(metrics, metric_names.SYMBOLS, ".0f")
    return f"{rows} rows, {symbols} symbols, {first}..{last}"


def _train(metrics: Mapping[str, float], run_tags: Mapping[str, str]) -> str:  # noqa: ARG001
    mae, zero = metric_names.point("test", "mae"), metric_names.point("test", "mae", "zero")
    digits = digits_to_tell_apart([metrics.get(mae), metrics.get(zero)])  # never "0.0120 vs 0.0120"
    return (
        f"test IC {_number(metrics, metric_names.point('test', 'ic'), '.4f')}, test MAE "
        f"{_number(metrics, mae, f'.{digits}g')} vs zero {_number(metrics, zero, f'.{digits}g')}"
    )


def _calibrate(metrics: Mapping[str, float], run_tags: Mapping[str, str]) -> str:  # noqa: ARG001
    levels = metric_names.levels(metrics, "test")
    if not levels:
        return "no test coverage logged"
    coverage = _number(metrics, metric_names.coverage("test", levels[0]), ".3f")
    return f"test coverage of the {metric_names.level_tag(levels[0])}% interval {coverage}"


def _export(metrics: Mapping[str, float], run_tags: Mapping[str, str]) -> str:  # noqa: ARG001
    version = run_tags.get(tags.VERSION, "?")
    return f"version {version}: {run_tags.get(tags.GATE, 'no gate decision logged')}"


def _backtest(metrics: Mapping[str, float], run_tags: Mapping[str, str]) -> str:  # noqa: ARG001
    low, high = metric_names.BT_SHARPE_CI_LOW, metric_names.BT_SHARPE_CI_HIGH
    return (
        f"Sharpe after costs {_number(metrics, metric_names.BT_SHARPE, '.2f')} "
        f"[{_number(metrics, low, '.2f')}, {_number(metrics, high, '.2f')}]"
    )


# the key figure of each step main chains, from its run's metrics and tags
KEY_FIGURES: dict[str, Callable[[Mapping[str, float], Mapping[str, str]], str]] = {
    "prepare": _prepare,
    "train": _train,
    "calibrate": _calibrate,
    "export": _export,
    "backtest": _backtest,
}


def key_figure(outcome: StepOutcome) -> str:
    """The figure a person looks at first for this step (a skipped model: why)."""
    if outcome.status == SKIPPED:
        return outcome.note
    figure = KEY_FIGURES.get(outcome.label.split(".")[0])
    return figure(outcome.metrics, outcome.tags) if figure else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(outcomes: list[StepOutcome], total_seconds: float | None = None) -> str:
    """The Markdown table: step, ran/reused/skipped, seconds, key figure, run; with a closing
    line on what the seconds are (and main's own total, when given)."""
    lines = [
        "| step | run | seconds | key figure | run id |",
        "|---|---|---:|---|---|",
    ]
    for outcome in outcomes:
        seconds = "" if outcome.seconds is None else f"{outcome.seconds:.1f}"
        cells = (outcome.label, outcome.status, seconds, key_figure(outcome), outcome.run_id)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    note = "Seconds: each run's own wall time (a reused run's from when it ran)."
    if total_seconds is not None:
        note += f" This main took {duration(total_seconds)}."
    return "\n".join([*lines, "", note]) + "\n"

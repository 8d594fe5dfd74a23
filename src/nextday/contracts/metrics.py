"""The metrics one step logs and another reads back.

Two kinds cross a step's boundary: a step run's MLflow metrics that a later step reads from
the run (main reads prepare's row counts, export copies train's baselines, backtest reads
tune's trial count, main's summary every step's headline), and the export's metrics that
travel with a version (metadata.json and the version's `metric.<name>` tags), which the gate,
the card, `versions` and the monitor's drift reference read.

Each such name is declared once below (`CONTRACT`: its pattern, the steps that write it, the
readers) and built by the functions here; readers go through `read` (a decision: a missing
name fails, naming the run and the step that should have written it) or `read_optional` (a
report: NaN when absent). Writers leave out a value that is not finite, since MLflow stores
no NaN: `finite_only` marks the names for which that happens on real data.

The naming order for new names is `<segment>_<forecast>_<quantity>_<level>`, each part
optional but the quantity: `test_online_coverage_80`, `bt_strategy_sharpe`, `val_mae`.

- segment: `train`, `val`, `test`, `bt` (the backtest's days), `live`, `monitor`;
- forecast: what made the numbers, left out for the model itself (`baseline_zero`,
  `oracle`, `online`, `raw`, `const`, `strategy`);
- quantity: `mae`, `ic`, `coverage`, `rows`, ... with its own qualifiers (`sharpe_ci_low`);
- level: the interval's level in percent, last.

The names below from before this order keep their names, so that runs already in a store
stay comparable with new ones in the MLflow UI: `baseline_zero_test_mae` (forecast before
segment), `oracle_test_<quantity>` and `dm_zero_mae_p` (the Diebold-Mariano p-value against
the zero predictor, on the test days).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SEGMENTS = ("train", "val", "test")  # the dataset's segments, as the splitter names them
# a forecast's point metrics (evaluation/metrics.py computes them)
POINT_QUANTITIES = ("mae", "rmse", "r2", "dir_acc", "ic", "skill")

# what each field of a pattern may hold, and the values `examples` fills in
_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "segment": ("|".join(SEGMENTS), SEGMENTS),
    "judged": ("val|test", ("val", "test")),  # the segments a model is judged on
    "level": (r"\d{1,2}", ("80",)),
    "baseline": (r"[a-z]+", ("zero",)),
    "quantity": ("|".join(POINT_QUANTITIES), ("mae",)),
}


@functools.cache
def _regex(pattern: str, **fixed: str) -> re.Pattern[str]:
    """`pattern` as a regular expression, its fields as _FIELDS allows or as `fixed`."""
    parts = re.split(r"\{(\w+)\}", pattern)
    return re.compile(
        "".join(
            f"(?:{re.escape(fixed[part]) if part in fixed else _FIELDS[part][0]})"
            if i % 2
            else re.escape(part)
            for i, part in enumerate(parts)
        )
    )


@dataclass(frozen=True)
class Metric:
    pattern: str  # the name, with {field}s (_FIELDS)
    writers: tuple[str, ...]  # the steps that log it
    readers: str  # who reads it, in words
    meaning: str
    finite_only: bool = False  # left out where its value is not finite (an IC on one symbol)

    def matches(self, name: str, **fixed: str) -> bool:
        return _regex(self.pattern, **fixed).fullmatch(name) is not None

    def examples(self) -> list[str]:
        """Its names with each field at the values a default run logs (every segment, the
        80% interval, the zero predictor, MAE)."""
        names = [self.pattern]
        for field, (_, values) in _FIELDS.items():
            names = [n.replace(f"{{{field}}}", v) for n in names for v in values]
        return list(dict.fromkeys(names))


ROWS = "rows"
SYMBOLS = "symbols"
SEGMENT_ROWS = "{segment}_rows"
SEGMENT_EARNINGS_ROWS = "{segment}_earnings_rows"
POINT = "{judged}_{quantity}"
BASELINE_POINT = "baseline_{baseline}_{judged}_{quantity}"
ORACLE_POINT = "oracle_{judged}_{quantity}"
COVERAGE = "{judged}_coverage_{level}"
WIDTH = "{judged}_width_{level}"
INTERVAL_SCORE = "{judged}_interval_score_{level}"
ONLINE_COVERAGE = "test_online_coverage_{level}"
ONLINE_WIDTH = "test_online_width_{level}"
ONLINE_INTERVAL_SCORE = "test_online_interval_score_{level}"
DM_ZERO_MAE_P = "dm_zero_mae_p"
PARITY_MAX_ABS_DIFF = "parity_max_abs_diff"
STUDY_TRIALS = "study_trials"
BT_SHARPE = "bt_strategy_sharpe"
BT_SHARPE_CI_LOW = "bt_strategy_sharpe_ci_low"
BT_SHARPE_CI_HIGH = "bt_strategy_sharpe_ci_high"

MODEL_STEPS = ("train", "tune")
MODEL, ORACLE = "model", "oracle"  # `point`'s forecasts besides the baselines' names

CONTRACT: tuple[Metric, ...] = (
    Metric(ROWS, ("prepare",), "main's summary", "rows of the prepared dataset"),
    Metric(SYMBOLS, ("prepare",), "main's summary", "symbols of the prepared dataset"),
    Metric(
        SEGMENT_ROWS,
        ("prepare",),
        "main (which models it can train)",
        "rows of a segment (train's and tune's `train_rows`: the rows the model trained on)",
    ),
    Metric(
        SEGMENT_EARNINGS_ROWS,
        ("prepare",),
        "main (which models it can train)",
        "rows of a segment on an earnings day",
    ),
    Metric(
        POINT,
        (*MODEL_STEPS, "export"),
        "main's summary, the card, `versions` (export's: the served graph's)",
        "the model's point metric on a segment's judged rows",
        finite_only=True,
    ),
    Metric(
        BASELINE_POINT,
        (*MODEL_STEPS, "export"),
        "export (copies the test ones for the card), main's summary",
        "a baseline's point metric (zero, mean, momentum, linear, tree)",
        finite_only=True,
    ),
    Metric(
        ORACLE_POINT,
        MODEL_STEPS,
        "export (copies the test ones for the card)",
        "the oracle's point metric, where the data knows the true mean",
        finite_only=True,
    ),
    Metric(
        COVERAGE,
        ("calibrate", "export"),
        "main's summary (calibrate's), the gate and the card (export's), the drift reference",
        "share of outcomes inside the calibrated central interval",
    ),
    Metric(WIDTH, ("calibrate", "export"), "the card", "mean width of that interval"),
    Metric(
        INTERVAL_SCORE,
        ("calibrate", "export"),
        "the gate, the card",
        "the interval score (Gneiting and Raftery) of that interval",
    ),
    Metric(
        ONLINE_COVERAGE,
        ("export",),
        "the gate, the card",
        "the version's online rule replayed over the test days: coverage",
        finite_only=True,  # only with an online rule offered
    ),
    Metric(
        ONLINE_WIDTH,
        ("export",),
        "the card",
        "the online rule's replay: mean width",
        finite_only=True,
    ),
    Metric(
        ONLINE_INTERVAL_SCORE,
        ("export",),
        "the gate",
        "the online rule's replay: interval score",
        finite_only=True,
    ),
    Metric(
        DM_ZERO_MAE_P,
        (*MODEL_STEPS, "export"),
        "the gate (`beats_zero`), the card, `versions`",
        "one-sided Diebold-Mariano p-value that the model's MAE (export's: the served "
        "graph's) beats the zero predictor's on the test days",
        finite_only=True,  # no p-value where the loss differences do not vary
    ),
    Metric(
        PARITY_MAX_ABS_DIFF,
        ("export",),
        "`versions`",
        "max |ONNX - Keras| of the deterministic graph",
    ),
    Metric(STUDY_TRIALS, ("tune",), "backtest (deflates the Sharpe)", "trials of the study"),
    Metric(BT_SHARPE, ("backtest",), "main's summary", "the long-short book's Sharpe after costs"),
    Metric(
        BT_SHARPE_CI_LOW,
        ("backtest",),
        "main's summary",
        "its bootstrap interval, low end",
        finite_only=True,
    ),
    Metric(
        BT_SHARPE_CI_HIGH,
        ("backtest",),
        "main's summary",
        "its bootstrap interval, high end",
        finite_only=True,
    ),
)


class MissingMetricError(KeyError):
    """A step reads a metric its input run did not log."""

    def __str__(self) -> str:  # KeyError's own str() quotes the message
        return str(self.args[0])


def level_tag(level: float) -> str:
    """How a level appears in metric names: 0.8 -> "80"."""
    return f"{round(level * 100):d}"


def _build(pattern: str, **fields: str) -> str:
    name = pattern.format(**fields)
    declared(name)
    return name


def segment_rows(segment: str) -> str:
    return _build(SEGMENT_ROWS, segment=segment)


def segment_earnings_rows(segment: str) -> str:
    return _build(SEGMENT_EARNINGS_ROWS, segment=segment)


def point(segment: str, quantity: str, forecast: str = "model") -> str:
    """A point metric of the model (`forecast="model"`), the oracle or a baseline."""
    if forecast == MODEL:
        return _build(POINT, judged=segment, quantity=quantity)
    if forecast == ORACLE:
        return _build(ORACLE_POINT, judged=segment, quantity=quantity)
    return _build(BASELINE_POINT, baseline=forecast, judged=segment, quantity=quantity)


def _online_on(segment: str, level: float) -> str:
    """The level tag of an online rule's replay, which export runs over the test days only."""
    if segment != "test":
        raise ValueError(f"the online rule is replayed over the test days, not {segment!r}")
    return level_tag(level)


def coverage(segment: str, level: float, online: bool = False) -> str:
    """The calibrated interval's coverage (`online`: the online rule's replay over test)."""
    if online:
        return _build(ONLINE_COVERAGE, level=_online_on(segment, level))
    return _build(COVERAGE, judged=segment, level=level_tag(level))


def width(segment: str, level: float, online: bool = False) -> str:
    if online:
        return _build(ONLINE_WIDTH, level=_online_on(segment, level))
    return _build(WIDTH, judged=segment, level=level_tag(level))


def interval_score(segment: str, level: float, online: bool = False) -> str:
    if online:
        return _build(ONLINE_INTERVAL_SCORE, level=_online_on(segment, level))
    return _build(INTERVAL_SCORE, judged=segment, level=level_tag(level))


def declared(name: str) -> Metric:
    """The declaration `name` falls under; a name no step declares is a bug, not data."""
    for metric in CONTRACT:
        if metric.matches(name):
            return metric
    raise ValueError(f"metric {name!r} is not in the contract (nextday.contracts.metrics)")


def read(logged: Mapping[str, float], name: str, run: str = "the input run") -> float:
    """The value of `name` in `logged` (a run's metrics, or a version's); a missing one
    fails with the run and the step that should have logged it."""
    metric = declared(name)
    if name not in logged:
        raise MissingMetricError(
            f"{run} logged no metric {name!r} (written by {' or '.join(metric.writers)}): "
            "a run from an older nextday, or a step that failed part way; run that step again"
        )
    return float(logged[name])


def read_optional(logged: Mapping[str, float], name: str) -> float:
    """The value of `name`, NaN where it was not logged (for reports, which say n/a)."""
    declared(name)
    value = logged.get(name)
    return float("nan") if value is None else float(value)


def levels(logged: Mapping[str, float], segment: str) -> list[float]:
    """The interval levels whose coverage on `segment` is in `logged`, smallest first."""
    found = re.compile(rf"{segment}_coverage_(\d{{1,2}})")
    return sorted(int(m.group(1)) / 100 for name in logged if (m := found.fullmatch(name)))


def is_copied_to_export(name: str) -> bool:
    """A model run's metric that export copies beside the served model's: the baselines'
    and the oracle's on the test days."""
    return any(
        metric.matches(name, judged="test")
        for metric in CONTRACT
        if metric.pattern in (BASELINE_POINT, ORACLE_POINT)
    )


def missing(step: str, logged: Iterable[str]) -> list[str]:
    """The names `step` declares it writes, at their `examples`, that `logged` lacks
    (finite_only names aside): what a reader would fail on."""
    have = set(logged)
    return [
        name
        for metric in CONTRACT
        if step in metric.writers and not metric.finite_only
        for name in metric.examples()
        if name not in have
    ]


def reference_table() -> str:
    """The contract as a markdown table (docs/architecture.md holds it, tests check it)."""
    lines = ["| metric | written by | read by | meaning |", "|---|---|---|---|"]
    for metric in CONTRACT:
        written = ", ".join(metric.writers)
        note = " (absent where not finite)" if metric.finite_only else ""
        lines.append(
            f"| `{metric.pattern}` | {written} | {metric.readers} | {metric.meaning}{note} |"
        )
    return "\n".join(lines) + "\n"

"""export_report.md: the gate's decision, the served output beside the zero predictor, and
every parity result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from nextday.contracts import metrics as metric_names
from nextday.evaluation import claims
from nextday.evaluation.metrics import min_symbols
from nextday.export.gate import Check
from nextday.export.parity import Parity
from nextday.models.spec import ModelSpec
from nextday.pages import markdown
from nextday.pages.markdown import decimals_to_tell_apart

TEST_MAE, ZERO_TEST_MAE = (
    metric_names.point("test", "mae"),
    metric_names.point("test", "mae", "zero"),
)
VAL_MAE, ZERO_VAL_MAE = metric_names.point("val", "mae"), metric_names.point("val", "mae", "zero")
TEST_IC = metric_names.point("test", "ic")
TEST_COVERAGE, TEST_WIDTH = metric_names.coverage("test", 0.8), metric_names.width("test", 0.8)


def headline(metrics: Mapping[str, float]) -> str:
    """The served output's test MAE beside the zero predictor's, and its coverage."""
    return (
        f"test MAE {metrics[TEST_MAE]:.5f} vs zero {metrics[ZERO_TEST_MAE]:.5f}, "
        f"coverage {metrics[TEST_COVERAGE]:.3f}"
    )


def render(
    spec: ModelSpec,
    registered: str,
    version: str,
    metrics: Mapping[str, float],
    parity: Parity,
    checks: Sequence[Check],
    decision: str,
    significance: float,
) -> str:
    """The report's text; `significance` is the level at which it may say "beats"."""
    compared = (TEST_MAE, ZERO_TEST_MAE, VAL_MAE, ZERO_VAL_MAE)
    decimals = decimals_to_tell_apart([100 * metrics[k] for k in compared if k in metrics])

    def pct(key: str) -> str:
        return f"{100 * metrics[key]:.{decimals}f}%" if key in metrics else "n/a"

    lines = [
        f"# Export report: {registered} version {version} ({spec.arch}, {spec.name})",
        "",
        f"**Decision: {decision}.**",
        "",
        "## Acceptance checks",
        "",
        *[f"- {'PASS' if c.passed else 'FAIL'} `{c.name}`: {c.detail}" for c in checks],
        "",
        "## The served output (ONNX MC mean and calibrated interval) beside the zero predictor",
        "",
        f"- Test MAE {pct(TEST_MAE)} vs zero {pct(ZERO_TEST_MAE)}; IC "
        + (
            f"{metrics[TEST_IC]:.4f}"
            if TEST_IC in metrics
            else f"undefined (fewer than evaluation.min_symbols={min_symbols()} symbols a date)"
        )
        + "; direction accuracy "
        f"{metric_names.read_optional(metrics, metric_names.point('test', 'dir_acc')):.3f}.",
        "- "
        + claims.versus("the zero predictor", metrics.get(metric_names.DM_ZERO_MAE_P), significance)
        + " on test.",
        f"- Validation MAE {pct(VAL_MAE)} vs zero {pct(ZERO_VAL_MAE)}.",
        f"- Test coverage of the 80% interval {metrics[TEST_COVERAGE]:.3f}, width "
        f"{metrics[TEST_WIDTH]:.5f}.",
        "",
        "## Parity: deterministic ONNX graph vs Keras (dropout off)",
        "",
        markdown.table(parity.deterministic),
        "",
        "## Parity: MC graph vs Keras MC dropout (statistical)",
        "",
        markdown.table(pd.DataFrame([parity.mc])),
        "",
        "## Parity: the MC graph's calibration vs Calibration.apply (same MC samples)",
        "",
        "Max difference over the five outputs, relative to each row's sigma: "
        f"{parity.calibration.max_relative:.2e} (absolute {parity.calibration.max_abs:.2e}).",
        "",
        "## float16 variant vs float32 (MC graph, same masks)",
        "",
        markdown.table(
            pd.DataFrame([{k.removeprefix("fp16_"): v for k, v in parity.float16.items()}])
        ),
        "",
        "float16 is built for GPUs; ModelInference runs float32 on the CPU.",
    ]
    return "\n".join(lines) + "\n"

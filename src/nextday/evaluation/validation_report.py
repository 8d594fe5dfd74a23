"""validation_report.md: a train run's verdict in words, from its `Judgement`, with the
pictures `judging` draws into report/ shown where the text talks about them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.contracts import metrics as metric_names
from nextday.contracts.pictures import (
    ERROR_BY_MOVE_SIZE,
    ERROR_HISTOGRAM,
    IC_BY_MONTH,
    LOSS_CURVES,
    PREDICTED_VS_ACTUAL,
)
from nextday.evaluation import claims
from nextday.evaluation.judging import Judgement, JudgingSettings
from nextday.models.spec import ModelSpec
from nextday.pages import markdown
from nextday.pages.markdown import decimals_to_tell_apart

JUDGED_ROWS = {"normal": "normal days", "earnings": "earnings days", "all": "all days"}


def _pct(value: float, decimals: int = 3) -> str:
    return f"{100 * value:.{decimals}f}%"


TEST_IC, TEST_SKILL = metric_names.point("test", "ic"), metric_names.point("test", "skill")
ORACLE_IC = metric_names.point("test", "ic", metric_names.ORACLE)
ORACLE_MAE = metric_names.point("test", "mae", metric_names.ORACLE)
TRAIN_ROWS = metric_names.segment_rows("train")  # train's: the rows it trained on


def _verdict(judged: Judgement, settings: JudgingSettings) -> list[str]:
    metrics, dm, best = judged.metrics, judged.dm, judged.best_baseline
    test_mae, zero_mae = metrics[metric_names.point("test", "mae")], judged.zero_test_mae
    target = settings.target_test_mae
    compared = [test_mae, zero_mae, *([target] if np.isfinite(target) else [])]
    decimals = decimals_to_tell_apart([100 * v for v in compared])
    level = settings.significance
    lines = [
        f"- Test MAE {_pct(test_mae, decimals)} against {_pct(zero_mae, decimals)} for always "
        "predicting 0 "
        f"(skill {metric_names.read_optional(metrics, TEST_SKILL):+.4f}): "
        + claims.versus("the zero predictor", dm.get(metric_names.DM_ZERO_MAE_P), level)
        + ".",
        "- "
        + claims.versus(f"the best baseline `{best}`", dm.get("dm_best_mae_p"), level)
        + f". Squared loss, one-sided p: {dm.get('dm_zero_mse_p', float('nan')):.4g} against "
        f"zero, {dm.get('dm_best_mse_p', float('nan')):.4g} against `{best}`.",
        f"- Test IC {judged.ic_text}"
        + (
            f"; the oracle's {metrics[ORACLE_IC]:.4f} (ratio "
            f"{metrics[TEST_IC] / metrics[ORACLE_IC]:.2f}); oracle MAE "
            f"{_pct(metrics[ORACLE_MAE], decimals)}, the floor on this data."
            if ORACLE_IC in metrics and TEST_IC in metrics
            else "."
        ),
    ]
    if np.isfinite(target):
        lines.append(
            f"- The seed's target, test MAE < {_pct(target, decimals)}: "
            f"{'met' if test_mae < target else 'missed'} ({_pct(test_mae, decimals)}). The zero "
            f"predictor scores {_pct(zero_mae, decimals)} on the same rows, so "
            + (
                "the target is met without any skill: it says nothing about the model."
                if zero_mae < target
                else "the target does require skill."
            )
        )
    return lines


def render(spec: ModelSpec, judged: Judgement, settings: JudgingSettings) -> str:
    """The report's text; it lies at the run's artifact root, beside report/ and its PNGs."""
    metrics = judged.metrics
    lines = [
        f"# Validation report: {spec.name} model ({spec.arch})",
        "",
        f"Judged on {JUDGED_ROWS[spec.evaluate_rows]}. Trained on {metrics[TRAIN_ROWS]:,} rows "
        f"({spec.train_rows} days, earnings weight {spec.earnings_weight:g}); "
        f"{int(metrics['epochs_run'])} epochs, best epoch {int(metrics['best_epoch'])} "
        f"(early stopping, patience {spec.patience}).",
        "",
        LOSS_CURVES.markdown(),
        "",
        "## The verdict, plainly",
        "",
        *_verdict(judged, settings),
        "",
        PREDICTED_VS_ACTUAL.markdown(),
        "",
        ERROR_HISTOGRAM.markdown(),
    ]
    for segment, table in judged.tables.items():
        lines += [
            "",
            f"## {segment} segment",
            "",
            markdown.table(table.rename_axis("forecast"), index=True),
        ]
    dm = judged.dm
    lines += [
        "",
        "## Diebold-Mariano (test, loss differences averaged per date)",
        "",
        markdown.table(pd.DataFrame({"test": list(dm), "value": list(dm.values())})),
    ]
    top = settings.importance_top_k
    for name, table in judged.importance.items():
        lines += [
            "",
            f"## Permutation importance, {name} (validation, top {top})",
            "",
            markdown.table(table.head(top)),
        ]
    lines += [
        "",
        "## MAE by size of the actual move (test)",
        "",
        markdown.table(judged.by_size, index=True),
        "",
        ERROR_BY_MOVE_SIZE.markdown(),
    ]
    if not judged.by_month.empty:
        lines += ["", "## IC by month (test)", "", markdown.table(judged.by_month, index=True)]
        lines += ["", IC_BY_MONTH.markdown()]
    return "\n".join(lines) + "\n"

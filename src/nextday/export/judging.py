"""The served output judged: the MC graph's answers on every segment, its point and interval
metrics on validation and test rows beside the zero predictor, the Diebold-Mariano test that
it beats that predictor on test, and the interval the version's online rule would have served
over the test days."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.contracts import metrics as metric_names
from nextday.contracts.outputs import INTERVALS
from nextday.evaluation.diebold_mariano import diebold_mariano
from nextday.evaluation.intervals import interval_metrics
from nextday.evaluation.metrics import point_metrics, prefixed
from nextday.export import runtime
from nextday.models.data import SEGMENTS, Segment
from nextday.uncertainty.online import VOLATILITY_FEATURE, ServedOnline
from nextday.uncertainty.replay import replay

Outputs = dict[str, np.ndarray]  # output name -> one value per row


def served_outputs(graph: Path, judged: Mapping[str, Segment]) -> dict[str, Outputs]:
    """The graph's outputs on each segment's judged rows."""
    session = runtime.session(graph)
    return {segment: runtime.outputs(session, judged[segment].x) for segment in SEGMENTS}


def judge(outputs: Outputs, y: np.ndarray, dates: np.ndarray, segment: str) -> dict[str, float]:
    """The served model's metrics on one segment, beside the zero predictor."""
    out = prefixed(point_metrics(outputs["prediction"], y, dates), segment)
    out.update(prefixed(point_metrics(np.zeros_like(y), y, dates), f"baseline_zero_{segment}"))
    for level, (lower, upper) in INTERVALS.items():
        out.update(prefixed(interval_metrics(outputs[lower], outputs[upper], y, level), segment))
    if segment == "test":
        for loss in ("mae", "mse"):
            result = diebold_mariano(outputs["prediction"] - y, -y, dates, loss=loss)
            out[f"dm_zero_{loss}_p"] = result.p_better
    return out


def judge_served(
    outputs: Mapping[str, Outputs],
    judged: Mapping[str, Segment],
    model_metrics: Mapping[str, float],
) -> dict[str, float]:
    """Validation and test metrics of the served output, with the model run's baseline and
    oracle test metrics beside them (what the card compares with)."""
    metrics: dict[str, float] = {}
    for segment in ("val", "test"):
        rows = judged[segment]
        metrics.update(judge(outputs[segment], rows.y, rows.dates, segment))
    metrics.update(
        {
            name: value
            for name, value in model_metrics.items()
            if metric_names.is_copied_to_export(name) and name not in metrics
        }
    )
    return metrics


def judge_online(
    outputs: Outputs, test: Segment, features: list[str], online: ServedOnline
) -> dict[str, float]:
    """test_online_{coverage,width,interval_score}_80: the version's online rule replayed
    over the test days on the served p10..p90 (from the static calibration, m = 1, on the
    first test day; each day's interval from the days before it only)."""
    level = online.settings.level
    lower, upper = INTERVALS[level]
    vol = test.flat[:, features.index(VOLATILITY_FEATURE)]
    frame = {"date": test.dates, "p10": outputs[lower], "p50": outputs["p50"]}
    frame |= {"p90": outputs[upper], "actual": test.y, "vol": vol}
    replayed = replay(pd.DataFrame(frame), online.settings, online.start())
    return prefixed(interval_metrics(replayed.lower, replayed.upper, test.y, level), "test_online")

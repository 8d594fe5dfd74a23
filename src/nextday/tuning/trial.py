"""One Optuna trial: fit the trial's model with per-epoch pruning and score it on validation
rows only (the test segment is never seen while tuning)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from nextday.evaluation.metrics import point_metrics
from nextday.models.model import NextdayModel
from nextday.models.spec import ModelSpec


@dataclass
class TrialResult:
    epochs_run: int
    scores: dict[str, float]  # validation point metrics (empty when pruned)
    metric: str
    pruned: optuna.TrialPruned | None = None

    @property
    def value(self) -> float:
        """The objective: the validation `metric`."""
        return self.scores[self.metric]


def fit_trial(
    trial: optuna.Trial,
    spec: ModelSpec,
    train: Mapping,
    data: tuple[pd.DataFrame, pd.DataFrame | None],
    metric: str,
    checkpoint: Path,
    log_epoch: Callable[[int, dict], None],
    start_from: NextdayModel | None = None,
) -> TrialResult:
    """Fit `spec` (the `train` group says how) on the prepared dataset and its oracle
    (`data`), reporting `metric` on validation rows after each epoch so the pruner can stop
    it (starting from `start_from`'s weights when given). A finished trial whose metric is
    not finite is an error."""
    from nextday.tuning.pruning import ReportObjective

    reporter: list[ReportObjective] = []

    def callbacks(arranged):
        reporter.append(ReportObjective(trial, arranged.judged["val"], metric, log_epoch))
        return reporter

    dataset, truth = data
    model = NextdayModel.from_config(spec, train).fit(
        dataset, truth, checkpoint=checkpoint, callbacks=callbacks, start_from=start_from
    )
    if reporter and reporter[0].pruned is not None:
        return TrialResult(reporter[0].epochs_seen, {}, metric, reporter[0].pruned)
    val = model.fitted_data().judged["val"]
    scores = point_metrics(model.predict(val.x), val.y, val.dates)
    if not np.isfinite(scores[metric]):
        raise ValueError(f"trial {trial.number}: val_{metric} is not finite")
    return TrialResult(model.fitted_history().epochs_run, scores, metric)

"""Feed the pruner every epoch: the objective on the judged validation rows, from a callback."""

from __future__ import annotations

from collections.abc import Callable

import keras
import optuna

from nextday.evaluation.metrics import point_metrics
from nextday.models.training import predict


class ReportObjective(keras.callbacks.Callback):
    """After each epoch: measure `metric` on the validation rows the model is judged on, put
    it in the epoch's logs as `val_<metric>` (the epoch's log line and progress bar show it),
    hand it to `log(epoch, values)`, report it to the trial, and, if the pruner says so, stop
    training after this epoch and keep the `optuna.TrialPruned` in `pruned` for the trial to
    raise once `fit` has returned."""

    def __init__(self, trial: optuna.Trial, segment, metric: str, log: Callable[[int, dict], None]):
        super().__init__()
        self.trial, self.segment, self.metric, self.log = trial, segment, metric, log
        self.epochs_seen = 0
        self.pruned: optuna.TrialPruned | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_seen = epoch + 1
        value = point_metrics(
            predict(self.model, self.segment.x), self.segment.y, self.segment.dates
        )[self.metric]
        if logs is not None:
            logs[f"val_{self.metric}"] = float(value)
        values = {k: float(v) for k, v in (logs or {}).items() if k in ("loss", "val_loss")}
        values[f"val_{self.metric}"] = float(value)
        self.log(epoch, values)
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.pruned = optuna.TrialPruned(
                f"pruned after epoch {epoch + 1}: val_{self.metric}={value:.6g}"
            )
            self.model.stop_training = True

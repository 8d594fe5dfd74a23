"""The one training loop: every architecture and every step (train, tune) fits through here."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from nextday.models.networks import loss_function
from nextday.models.spec import ModelSpec
from nextday.timing import interactive

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    """Model inputs (rows x features, or rows x window x features), labels and loss weights."""

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class FitResult:
    history: dict[str, list[float]]
    best_epoch: int  # 0-based epoch whose weights the model holds
    epochs_run: int
    stopped_early: bool
    checkpoint: Path | None
    extra: dict = field(default_factory=dict)


class _EpochHook(keras.callbacks.Callback):
    def __init__(self, hook: Callable[[int, dict], None]):
        super().__init__()
        self.hook = hook

    def on_epoch_end(self, epoch, logs=None):
        self.hook(epoch, dict(logs or {}))


class EpochLog(keras.callbacks.Callback):
    """One INFO line per epoch: the model, epoch i/max, loss, val loss, any other validation
    figure a callback before this one put in the epoch's logs (tune's objective), the epoch's
    seconds and the best val loss so far with its epoch."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.label, self.max_epochs = f"{spec.name}/{spec.arch}", spec.max_epochs
        self.best, self.best_epoch, self.started = math.inf, 0, time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):  # noqa: ARG002 (Keras' signature)
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = time.perf_counter() - self.started
        val_loss = float(logs.get("val_loss", math.nan))
        if val_loss < self.best:
            self.best, self.best_epoch = val_loss, epoch + 1
        others = "".join(
            f", {key} {float(value):.5g}"
            for key, value in logs.items()
            if key.startswith("val_") and key != "val_loss"
        )
        log.info(
            "fit %s: epoch %d/%d, loss %.5g, val loss %.5g%s, %.1f s; best val loss %.5g "
            "(epoch %d)",
            *(self.label, epoch + 1, self.max_epochs, float(logs.get("loss", math.nan))),
            *(val_loss, others, seconds, self.best, self.best_epoch),
        )


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seeds for Python, NumPy and TensorFlow; op determinism makes reruns identical."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        os.environ["TF_DETERMINISTIC_OPS"] = "1"
        tf.config.experimental.enable_op_determinism()


def fit(
    model: keras.Model,
    spec: ModelSpec,
    train: Inputs,
    val: Inputs,
    checkpoint: Path | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    steps_per_execution: int = 1,
    callbacks: list | None = None,
) -> FitResult:
    """Fit with Adam and the spec's loss, early stopping on val_loss (best weights restored)
    and a checkpoint of the best model. `on_epoch(epoch, logs)` sees every epoch's losses.

    Every epoch is logged at INFO (`EpochLog`); Keras' progress bar is drawn only where a
    person watches (`timing.interactive`: a terminal, not CI or `mlflow run`)."""
    model.compile(
        optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss=loss_function(spec),
        steps_per_execution=max(1, steps_per_execution),
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=spec.patience, restore_best_weights=True
    )
    hooks: list = [stopper, *(callbacks or [])]
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        hooks.append(
            keras.callbacks.ModelCheckpoint(
                str(checkpoint), monitor="val_loss", save_best_only=True
            )
        )
    if on_epoch is not None:
        hooks.append(_EpochHook(on_epoch))
    bar = interactive()
    if bar:  # the bar ends its epoch's line before the epoch's log line is written
        keras.utils.enable_interactive_logging()
        hooks.append(keras.callbacks.ProgbarLogger())
    else:
        keras.utils.disable_interactive_logging()  # no progress bars in logs
    hooks.append(EpochLog(spec))  # last: it sees what the callbacks before it added
    history = model.fit(
        train.x,
        train.y,
        sample_weight=train.weight,
        validation_data=(val.x, val.y, val.weight),
        batch_size=spec.batch_size,
        epochs=spec.max_epochs,
        shuffle=True,
        callbacks=hooks,
        verbose=1 if bar else 0,
    )
    losses = history.history["val_loss"]
    return FitResult(
        history={k: [float(v) for v in values] for k, values in history.history.items()},
        best_epoch=int(np.argmin(losses)),
        epochs_run=len(losses),
        stopped_early=stopper.stopped_epoch > 0,
        checkpoint=checkpoint,
    )


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Deterministic predictions (dropout off) as a flat float64 array. The model is called
    directly, a batch at a time: `model.predict` costs about 0.1 s a call before any row
    (scripts/bench_serve.py), and judging calls it dozens of times (permutation importance)."""
    chunks = [
        np.asarray(model(x[start : start + batch_size], training=False), dtype=np.float64)
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(chunks).reshape(-1) if chunks else np.zeros(0)

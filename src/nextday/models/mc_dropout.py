"""MC dropout: keep dropout on at inference and read the spread of many stochastic passes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import keras
import numpy as np


def dropout_layers(model: keras.Model) -> list[keras.layers.Dropout]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]


def reseed(model: keras.Model, seed: int) -> None:
    """Reset every dropout layer's random stream, so the same seed gives the same masks."""
    for i, layer in enumerate(dropout_layers(model)):
        layer.seed_generator.state.assign(
            np.array([seed + i, 0], dtype=layer.seed_generator.state.dtype)
        )


def mc_samples(
    model: keras.Model,
    x: np.ndarray,
    passes: int,
    seed: int,
    dropout: bool = True,
    batch_size: int = 16384,
    on_pass: Callable[[], None] | None = None,
) -> np.ndarray:
    """Predictions of `passes` stochastic passes, shape (passes, rows); with `dropout=False`
    every pass is the deterministic prediction. `on_pass()` is called after each pass."""
    if passes < 1:
        raise ValueError(f"calibrate.passes must be at least 1, got {passes}")
    reseed(model, seed)
    out = np.empty((passes, len(x)), dtype=np.float64)
    for p in range(passes):
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            out[p, start : start + len(chunk)] = np.asarray(model(chunk, training=dropout)).reshape(
                -1
            )
        if on_pass is not None:
            on_pass()
    return out


@contextlib.contextmanager
def with_dropout_rate(model: keras.Model, rate: float) -> Iterator[keras.Model]:
    """Set every dropout layer's rate for inference, and restore it afterwards."""
    layers = dropout_layers(model)
    saved = [layer.rate for layer in layers]
    for layer in layers:
        layer.rate = rate
    try:
        yield model
    finally:
        for layer, old in zip(layers, saved, strict=True):
            layer.rate = old

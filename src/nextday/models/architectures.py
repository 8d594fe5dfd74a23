"""The architectures, one entry each: how to build the layers, whether the model reads a
window of earlier rows, how export reads the trained layers, and how the model card says it.

Adding an architecture is one entry here and one file in conf/arch/. Export rebuilds each
layer from its `Layer.kind` ("dense" or "lstm", see `nextday.export.graphs`); an architecture
with a new kind of layer also teaches the graph builder that kind.

Nothing here imports Keras at module level: the config check (`models/spec.py`) reads the
registry before any model is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nextday.models.spec import ModelSpec


@dataclass(frozen=True)
class Layer:
    """One trained layer as export rebuilds it in the ONNX graph (`nextday.export.graphs`)."""

    kind: str  # "dense" or "lstm"
    weights: tuple[np.ndarray, ...]  # dense: kernel, bias; lstm: kernel, recurrent, bias
    activation: str  # dense only (the LSTM uses tanh and sigmoid, as Keras's default)
    dropout: float  # rate of the dropout after this layer (0: none)


@dataclass(frozen=True)
class Architecture:
    name: str
    sequence: bool  # reads the last `window` rows of the symbol, not the row alone
    # processed inputs -> the last hidden layer (the output head is shared)
    body: Callable[[Any, ModelSpec], Any]
    # a trained model -> its layers in order, for the ONNX graph builder
    export_layers: Callable[[Any, ModelSpec], list[Layer]]
    describe: Callable[[ModelSpec], str]


def dense_layers(x, spec: ModelSpec, start: int):
    """Dense layers `spec.layers[start:]`, each followed by its dropout."""
    import keras

    for i in range(start, len(spec.layers)):
        x = keras.layers.Dense(spec.layers[i], activation=spec.activation, name=f"dense_{i}")(x)
        if spec.dropout[i] > 0:
            x = keras.layers.Dropout(spec.dropout[i], name=f"dropout_{i}")(x)
    return x


def exported_dense(model, spec: ModelSpec, start: int) -> list[Layer]:

    return [
        Layer("dense", tuple(model.get_layer(f"dense_{i}").get_weights()), spec.activation, dropout)
        for i, dropout in enumerate(spec.dropout)
        if i >= start
    ]


def _mlp_body(x, spec: ModelSpec):
    return dense_layers(x, spec, start=0)


def _lstm_body(x, spec: ModelSpec):
    import keras

    x = keras.layers.LSTM(spec.layers[0], name="lstm")(x)
    if spec.dropout[0] > 0:
        x = keras.layers.Dropout(spec.dropout[0], name="dropout_0")(x)
    return dense_layers(x, spec, start=1)


def _lstm_export(model, spec: ModelSpec) -> list[Layer]:

    lstm = model.get_layer("lstm")
    if lstm.activation.__name__ != "tanh" or lstm.recurrent_activation.__name__ != "sigmoid":
        raise ValueError("only the default LSTM activations (tanh, sigmoid) are exported")
    first = Layer("lstm", tuple(lstm.get_weights()), "tanh", spec.dropout[0])
    return [first, *exported_dense(model, spec, start=1)]


ARCHITECTURES: dict[str, Architecture] = {
    entry.name: entry
    for entry in (
        Architecture(
            name="mlp",
            sequence=False,
            body=_mlp_body,
            export_layers=lambda model, spec: exported_dense(model, spec, start=0),
            describe=lambda spec: f"An MLP ({'-'.join(str(n) for n in spec.layers)})",
        ),
        Architecture(
            name="lstm",
            sequence=True,
            body=_lstm_body,
            export_layers=_lstm_export,
            describe=lambda spec: f"An LSTM ({spec.layers[0]} units over {spec.window} days)",
        ),
    )
}


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"arch={name!r} is unknown: expected one of {tuple(ARCHITECTURES)}")
    return ARCHITECTURES[name]

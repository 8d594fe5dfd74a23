"""The networks: each architecture's body (`models/architectures.py`) between the same input
processing and output head.

The feature processor sits inside the network as its first two layers, a clip to the
training bounds (`Winsorize`) and a fixed Normalization, so the model takes raw feature
values (what serving receives), and the output is rescaled by the training label's s.d., so
the layers learn in well-conditioned units.
"""

from __future__ import annotations

import keras
import numpy as np

from nextday.models.architectures import architecture
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import ModelSpec

# the processor's layers: fitted on the model's own training rows, never transferred
CLIP_LAYER, SCALE_LAYER = "clip_inputs", "scale_inputs"


@keras.saving.register_keras_serializable(package="nextday")
class Winsorize(keras.layers.Layer):
    """Clip each feature (the last axis) to fixed bounds: min(max(x, lower), upper)."""

    def __init__(self, lower, upper, **kwargs):
        super().__init__(**kwargs)
        self.lower = [float(v) for v in lower]
        self.upper = [float(v) for v in upper]

    def call(self, x):
        lower = keras.ops.convert_to_tensor(np.asarray(self.lower, dtype=np.float32))
        upper = keras.ops.convert_to_tensor(np.asarray(self.upper, dtype=np.float32))
        return keras.ops.minimum(keras.ops.maximum(x, lower), upper)

    def get_config(self):
        return {**super().get_config(), "lower": self.lower, "upper": self.upper}


def build_network(spec: ModelSpec, processor: FeatureProcessor) -> keras.Model:
    """The Keras model for `spec`: raw features in, next-day return out."""
    clip = Winsorize(processor.lower, processor.upper, name=CLIP_LAYER)
    normalise = keras.layers.Normalization(
        mean=np.array(processor.center),
        variance=np.square(np.array(processor.scale)),
        name=SCALE_LAYER,
    )
    entry = architecture(spec.arch)
    shape = (spec.window, spec.n_features) if entry.sequence else (spec.n_features,)
    inputs = keras.Input(shape, name="features")
    x = entry.body(normalise(clip(inputs)), spec)
    x = keras.layers.Dense(1, name="output")(x)
    outputs = keras.layers.Rescaling(processor.label_scale, name="to_returns")(x)
    return keras.Model(inputs, outputs, name=f"{spec.arch}_{spec.name}")


def loss_function(spec: ModelSpec):
    if spec.loss == "huber":
        return keras.losses.Huber(delta=spec.huber_delta)
    return {"mse": keras.losses.MeanSquaredError(), "mae": keras.losses.MeanAbsoluteError()}[
        spec.loss
    ]


def transfer_weights(
    source: keras.Model, target: keras.Model, source_features, target_features
) -> int:
    """Copy a trained model's weights into another of the same architecture.

    The first layer's input weights are matched by feature name (the earnings model's 17
    extra inputs keep their fresh initialisation); every later layer is copied as it is.
    Returns the number of layers copied.
    """
    copied = 0
    position = {name: i for i, name in enumerate(target_features)}
    rows = [position[name] for name in source_features]
    first = True
    for layer in target.layers:
        if not layer.weights or layer.name in (CLIP_LAYER, SCALE_LAYER):
            continue
        other = source.get_layer(layer.name)
        weights = [w.copy() for w in other.get_weights()]
        if first:
            fresh = layer.get_weights()
            kernel = fresh[0]
            kernel[rows] = weights[0]
            # the rest (bias, an LSTM's recurrent kernel) does not depend on the inputs
            weights = [kernel, *weights[1:]]
            first = False
        layer.set_weights(weights)
        copied += 1
    return copied

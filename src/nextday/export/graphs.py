"""A trained Keras model as two ONNX graphs that take raw features.

- deterministic: the network with dropout off; one output, `prediction`.
- MC: `passes` stochastic passes in one graph, with the dropout masks drawn inside it by ONNX
  `RandomUniform`, and the calibration applied; outputs `prediction` (the MC mean), `sigma`,
  `p10`, `p50`, `p90` and `mc_sd` (the raw spread of the passes). It is converted as two
  graphs, the passes (`samples`) and the calibration, joined by `join`, so that the float16
  variant can convert the passes alone; `calibration_part` cuts the calibration out of the
  joined graph again for its parity check against `Calibration.apply`.

Keras 3's `Dropout(training=True)` becomes `StatelessRandomUniformV2`, which tf2onnx cannot
convert, and captured Keras variables become graph inputs. So the forward pass is rebuilt here
in plain TensorFlow ops from the layers' weights (as constants) and converted with tf2onnx;
parity with Keras is checked by `nextday.export.parity` on every export.

One mask per pass and layer is shared by every row of a call ([passes, 1, units]): each row
still gets `passes` independent masks, as in Keras MC dropout, at a fraction of the random
draws, and the first layer before any dropout runs once instead of `passes` times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextday.contracts.outputs import OUTPUTS, QUANTILE_LEVELS
from nextday.models.architectures import Layer, architecture
from nextday.models.spec import ModelSpec
from nextday.uncertainty.calibration import EPS, Calibration

MC_OUTPUTS = (*OUTPUTS, "mc_sd")
INPUT_NAME = "features"
# name scope of the random draws, which stay float32 in the float16 variant
MASK_SCOPE = "masks"
SAMPLES = "samples"


@dataclass(frozen=True)
class Network:
    """What the forward pass of a trained nextday network needs, as numpy arrays."""

    lower: np.ndarray  # the processor's clip bounds
    upper: np.ndarray
    mean: np.ndarray
    divisor: np.ndarray
    layers: tuple[Layer, ...]
    output: tuple[np.ndarray, np.ndarray]
    label_scale: float
    window: int  # 1 for an MLP

    @property
    def n_features(self) -> int:
        return len(self.mean)


def network_of(model, spec: ModelSpec) -> Network:
    """Read the weights of a network built by `nextday.models.networks.build_network`."""
    import keras

    from nextday.models.networks import CLIP_LAYER, SCALE_LAYER

    clip = model.get_layer(CLIP_LAYER)
    lower = np.asarray(clip.lower, dtype=np.float32)
    upper = np.asarray(clip.upper, dtype=np.float32)
    normalise = model.get_layer(SCALE_LAYER)
    mean = np.asarray(normalise.mean, dtype=np.float32).reshape(-1)
    variance = np.asarray(normalise.variance, dtype=np.float32).reshape(-1)
    # what keras.layers.Normalization divides by
    divisor = np.maximum(np.sqrt(variance), np.float32(keras.backend.epsilon()))
    layers = architecture(spec.arch).export_layers(model, spec)
    output = tuple(model.get_layer("output").get_weights())
    label_scale = float(model.get_layer("to_returns").scale)
    return Network(lower, upper, mean, divisor, tuple(layers), output, label_scale, spec.window)


def input_shape(network: Network) -> list[int | None]:
    if network.window > 1:
        return [None, network.window, network.n_features]
    return [None, network.n_features]


def _activation(name: str):
    import tensorflow as tf

    functions = {
        "relu": tf.nn.relu,
        "tanh": tf.tanh,
        "sigmoid": tf.sigmoid,
        "elu": tf.nn.elu,
        "selu": tf.nn.selu,
        "linear": tf.identity,
    }
    if name not in functions:
        raise ValueError(f"activation {name!r} cannot be exported: use one of {list(functions)}")
    return functions[name]


def _forward(network: Network, x, passes: int, seed: int):
    """The network on raw inputs x; with passes > 0, MC dropout: returns [passes, rows]."""
    import tensorflow as tf

    def const(array):
        return tf.constant(np.asarray(array, dtype=np.float32))

    def dense(h, kernel, bias):
        # h may carry a leading passes axis: matmul broadcasts the 2-D kernel over it
        return tf.matmul(h, const(kernel)) + const(bias)

    clipped = tf.minimum(tf.maximum(x, const(network.lower)), const(network.upper))
    h = (clipped - const(network.mean)) / const(network.divisor)
    stochastic = False
    for index, layer in enumerate(network.layers):
        if layer.kind == "lstm":
            h = _lstm(h, network.window, *(const(w) for w in layer.weights))
        else:
            h = _activation(layer.activation)(dense(h, *layer.weights))
        if passes and layer.dropout > 0:
            units = int(h.shape[-1])
            with tf.name_scope(MASK_SCOPE):
                draw = tf.random.uniform([passes, 1, units], seed=seed + index)
                keep = tf.cast(draw >= layer.dropout, tf.float32) / (1.0 - layer.dropout)
            h = (h if stochastic else h[None]) * keep
            stochastic = True
    out = dense(h, *network.output)[..., 0] * network.label_scale
    if passes and not stochastic:  # a network without dropout: every pass is the same
        out = tf.tile(out[None], [passes, 1])
    return out


def _lstm(x, window: int, kernel, recurrent, bias):
    """Keras's LSTM (gates i, f, c, o; tanh and sigmoid), unrolled over the fixed window."""
    import tensorflow as tf

    units = int(recurrent.shape[0])
    rows = tf.shape(x)[0]
    h = tf.zeros([rows, units])
    c = tf.zeros([rows, units])
    for step in range(window):
        z = tf.matmul(x[:, step, :], kernel) + tf.matmul(h, recurrent) + bias
        i, f, g, o = tf.split(z, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
    return h


def deterministic_function(network: Network):
    import tensorflow as tf

    spec = tf.TensorSpec(input_shape(network), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def deterministic(features):
        return {"prediction": tf.identity(_forward(network, features, 0, 0), name="prediction")}

    return deterministic


def samples_function(network: Network, passes: int, seed: int):
    """The `passes` stochastic passes: features in, `samples` [passes, rows] out."""
    import tensorflow as tf

    spec = tf.TensorSpec(input_shape(network), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def samples(features):
        return {SAMPLES: tf.identity(_forward(network, features, passes, seed), name=SAMPLES)}

    return samples


def calibration_function(
    network: Network, calibration: Calibration, scale_columns: list[int], passes: int
):
    """The calibration (`nextday.uncertainty.calibration`) on the passes' samples: the five
    contract outputs and `mc_sd`."""
    import tensorflow as tf

    weights = np.asarray(calibration.scale_weights, dtype=np.float32)
    offsets = {name: calibration.quantile(level) for name, level in QUANTILE_LEVELS.items()}

    @tf.function(
        input_signature=[
            tf.TensorSpec([passes, None], tf.float32, name=SAMPLES),
            tf.TensorSpec(input_shape(network), tf.float32, name=INPUT_NAME),
        ]
    )
    def calibrated(samples, features):
        mean = tf.reduce_mean(samples, axis=0)
        sd = tf.sqrt(tf.reduce_mean(tf.square(samples - mean), axis=0))
        own = features[:, -1, :] if network.window > 1 else features  # the row's own features
        signals = tf.math.log(tf.abs(tf.gather(own, scale_columns, axis=1)) + EPS)
        log_scale = (
            weights[0]
            + tf.reduce_sum(signals * weights[1:-1], axis=1)
            + weights[-1] * tf.math.log(sd + EPS)
        )
        scale = tf.exp(log_scale)
        outputs = {
            "prediction": mean,
            "sigma": scale * calibration.sigma_factor,
            **{name: mean + scale * offset for name, offset in offsets.items()},
            "mc_sd": sd,
        }
        return {name: tf.identity(value, name=name) for name, value in outputs.items()}

    return calibrated


def to_onnx(function, opset: int):
    """Convert a tf.function with tf2onnx; returns the checked ModelProto."""
    import onnx
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=opset
    )
    _rename_outputs(proto)
    onnx.checker.check_model(proto)
    return proto


def _rename_outputs(proto) -> None:
    """tf2onnx names outputs after tensors (`Identity:0`); give them their contract names."""
    wanted = {}
    for output in proto.graph.output:
        for name in (*MC_OUTPUTS, SAMPLES):
            if output.name == name or output.name.startswith(f"{name}:"):
                wanted[output.name] = name
    for node in proto.graph.node:
        node.output[:] = [wanted.get(o, o) for o in node.output]
    for output in proto.graph.output:
        output.name = wanted.get(output.name, output.name)


def join(samples_graph, calibration_graph):
    """One MC graph: the samples graph's `samples` feed the calibration graph, and both read
    the same `features` input. Kept as two graphs until here so that the float16 variant can
    convert the network body alone (onnxconverter-common mistypes mixed graphs)."""
    import onnx
    from onnx import helper

    prefix = "calibration/"
    calibration_graph = onnx.compose.add_prefix(calibration_graph, prefix)
    shared = {f"{prefix}{SAMPLES}": SAMPLES, f"{prefix}{INPUT_NAME}": INPUT_NAME}
    shared.update({f"{prefix}{name}": name for name in MC_OUTPUTS})
    nodes = list(samples_graph.graph.node)
    for node in calibration_graph.graph.node:
        node.input[:] = [shared.get(i, i) for i in node.input]
        node.output[:] = [shared.get(o, o) for o in node.output]
        nodes.append(node)
    outputs = []
    for output in calibration_graph.graph.output:
        output.name = shared.get(output.name, output.name)
        outputs.append(output)
    graph = helper.make_graph(
        nodes,
        "mc_dropout_calibrated",
        list(samples_graph.graph.input),
        outputs,
        initializer=[*samples_graph.graph.initializer, *calibration_graph.graph.initializer],
        # the seam, declared: `calibration_part` cuts the calibration out again there
        value_info=[o for o in samples_graph.graph.output if o.name == SAMPLES],
    )
    opsets = {o.domain: o.version for o in samples_graph.opset_import}
    for o in calibration_graph.opset_import:
        opsets[o.domain] = max(o.version, opsets.get(o.domain, 0))
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        producer_name=samples_graph.producer_name,
        producer_version=samples_graph.producer_version,
    )
    proto.ir_version = samples_graph.ir_version
    onnx.checker.check_model(proto)
    return proto


def calibration_part(mc_graph):
    """The calibration inside a joined MC graph as a model of its own: `samples` and
    `features` in, the five served outputs and `mc_sd` out. Export's parity check runs it
    against `Calibration.apply` on the same samples."""
    import onnx

    return onnx.utils.Extractor(mc_graph).extract_model([SAMPLES, INPUT_NAME], list(MC_OUTPUTS))

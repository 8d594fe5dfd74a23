"""Architectures as a registry: every config file names an entry, and a new entry is all that a
new architecture needs to be built, trained through the one loop and exported."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from nextday.config import CONF_DIR, compose
from nextday.export import graphs
from nextday.models.architectures import (
    ARCHITECTURES,
    Architecture,
    Layer,
    dense_layers,
    exported_dense,
)
from nextday.models.networks import build_network
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import ConfigError, model_spec


def test_every_arch_config_names_a_registered_architecture():
    import yaml

    named = {yaml.safe_load(p.read_text())["name"] for p in Path(CONF_DIR, "arch").glob("*.yaml")}
    assert named == set(ARCHITECTURES)


def test_an_unknown_architecture_is_refused_naming_the_registered_ones():
    with pytest.raises(
        ConfigError, match=r"arch='gru' is unknown: expected one of \('mlp', 'lstm'\)"
    ):
        model_spec(compose(["arch.name=gru"]))


def test_the_window_comes_from_the_registry():
    assert model_spec(compose(["arch=lstm"])).window == 20
    assert model_spec(compose(["arch=mlp"])).window == 1
    with pytest.raises(ConfigError, match="arch.window must be at least 2 for arch=lstm"):
        model_spec(compose(["arch=lstm", "arch.window=1"]))


def _wide_body(x, spec):
    """A toy third architecture: the first layer twice as wide."""
    import keras

    x = keras.layers.Dense(2 * spec.layers[0], activation=spec.activation, name="wide")(x)
    return dense_layers(x, spec, start=1)


def _wide_export(model, spec):
    first = Layer("dense", tuple(model.get_layer("wide").get_weights()), spec.activation, 0.0)
    return [first, *exported_dense(model, spec, start=1)]


def test_a_new_entry_is_built_and_exported_without_touching_other_modules(monkeypatch):
    wide = Architecture(
        name="wide",
        sequence=False,
        body=_wide_body,
        export_layers=_wide_export,
        describe=lambda spec: f"A wide MLP ({2 * spec.layers[0]} first)",
    )
    monkeypatch.setitem(ARCHITECTURES, "wide", wide)
    spec = model_spec(compose(["arch.name=wide", "arch.dropout=[0,0,0]"]))
    assert spec.arch == "wide" and spec.window == 1
    x = np.random.default_rng(0).normal(size=(64, spec.n_features)).astype(np.float32)
    network = build_network(spec, FeatureProcessor.fit(spec.features, x, x[:, 0] * 0.01))
    assert network.get_layer("wide").units == 2 * spec.layers[0]
    proto = graphs.to_onnx(graphs.deterministic_function(graphs.network_of(network, spec)), 17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1)
    keras_out = np.asarray(network(x, training=False)).reshape(-1)
    np.testing.assert_allclose(onnx_out, keras_out, rtol=1e-4, atol=1e-6)

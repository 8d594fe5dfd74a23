"""The feature processor: fitted on training rows only, the same transformation in the network,
the baselines and the ONNX graph that serving runs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from nextday.config import compose
from nextday.export.files import write_onnx
from nextday.models.baselines import Baselines
from nextday.models.networks import CLIP_LAYER, SCALE_LAYER, build_network
from nextday.models.processor import UNBOUNDED, FeatureProcessor
from nextday.models.spec import model_spec
from nextday.uncertainty.calibration import Calibration


def _heavy_tailed(rows: int = 20_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(rows, 3))
    x[:, 2] = 0.0  # sparse: an earnings surprise, non-zero on 2% of rows
    hits = rng.choice(rows, rows // 50, replace=False)
    x[hits, 2] = rng.standard_t(3, size=len(hits))
    return x


def test_bounds_are_training_quantiles_and_sparse_features_survive():
    x = _heavy_tailed()
    processor = FeatureProcessor.fit(("a", "b", "sparse"), x, x[:, 0], clip_quantile=0.01)
    assert processor.lower[0] == pytest.approx(np.quantile(x[:, 0], 0.01), rel=1e-3)
    assert processor.upper[1] == pytest.approx(np.quantile(x[:, 1], 0.99), rel=1e-3)
    assert np.mean(processor.clip(x)[:, 0] != x[:, 0]) == pytest.approx(0.02, abs=1e-3)
    # a quantile of the sparse column is 0: it is clipped within its non-zero values instead
    nonzero = x[x[:, 2] != 0, 2]
    assert processor.upper[2] == pytest.approx(np.quantile(nonzero[nonzero > 0], 0.98))
    assert processor.lower[2] == pytest.approx(np.quantile(nonzero[nonzero < 0], 0.02))
    assert np.std(processor.transform(x)[:, 2]) > 0  # still carries its information
    # robust scale: median and IQR / 1.349 of the clipped values
    clipped = processor.clip(x)[:, 0]
    q25, q75 = np.quantile(clipped, [0.25, 0.75])
    assert processor.center[0] == pytest.approx(np.median(clipped))
    assert processor.scale[0] == pytest.approx((q75 - q25) / 1.349)


def test_clip_quantile_zero_is_no_clipping_and_round_trips(tmp_path):
    x = _heavy_tailed()
    processor = FeatureProcessor.fit(("a", "b", "c"), x, x[:, 0], 0.0, "standard")
    assert processor.lower == (-UNBOUNDED,) * 3 and processor.upper == (UNBOUNDED,) * 3
    np.testing.assert_allclose(processor.center, x.mean(axis=0))
    processor.to_json(tmp_path / "processor.json")
    assert FeatureProcessor.from_json(tmp_path / "processor.json") == processor
    with pytest.raises(ValueError, match="clip_quantile must be in"):
        FeatureProcessor.fit(("a", "b", "c"), x, x[:, 0], 0.6)


def test_the_linear_baseline_is_not_wrecked_by_outliers():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6000, 4))
    y = 0.001 * x[:, 0] + rng.standard_t(4, 6000) * 0.01
    bad = rng.choice(6000, 6, replace=False)
    x[bad, 1] = 1e4  # a few bad ticks in one feature
    train, test = slice(0, 4000), slice(4000, None)
    dates = np.repeat(np.arange(200), 30)[train]
    zero = np.mean(np.abs(y[test]))
    results = {}
    for q in (0.0, 0.005):
        processor = FeatureProcessor.fit(tuple("abcd"), x[train], y[train], q)
        fitted = Baselines(processor, (1.0,), {"max_iter": 5}).fit(x[train], y[train], None, dates)
        results[q] = np.mean(np.abs(fitted.predict("linear", x[test]) - y[test])) / zero
    test_x = x[test].copy()
    test_x[:5, 1] = 1e5  # outliers reach serving too
    answers = {}
    for q in (0.0, 0.005):
        processor = FeatureProcessor.fit(tuple("abcd"), x[train], y[train], q)
        fitted = Baselines(processor, (1.0,), {"max_iter": 5}).fit(x[train], y[train], None, dates)
        answers[q] = np.abs(fitted.predict("linear", test_x[:5]))
    assert np.all(answers[0.005] < 0.01)  # clipped to the training range: an ordinary answer
    assert np.all(answers[0.0] > 10 * answers[0.005].max())  # unclipped: the outlier dominates
    assert results[0.005] < 1.01


def test_network_and_onnx_apply_the_same_processor(tmp_path):
    import keras

    spec = model_spec(compose(["experiment=quick"]))
    rng = np.random.default_rng(2)
    x = rng.normal(0.01, 0.02, size=(500, spec.n_features)).astype(np.float32)
    processor = FeatureProcessor.fit(spec.features, x, x[:, 0], 0.01)
    model = build_network(spec, processor)
    assert model.get_layer(CLIP_LAYER) is not None
    inner = keras.Model(model.input, model.get_layer(SCALE_LAYER).output)
    np.testing.assert_allclose(inner(x).numpy(), processor.transform(x), rtol=1e-5, atol=1e-5)

    calibration = Calibration(
        scale_features=("vol_20d",), scale_weights=(-1.0, 0.5, 0.2), levels=(0.1, 0.5, 0.9),
        quantiles=(-1.0, 0.0, 1.0), sigma_factor=0.8, n_calibration=10, passes=4,
    )  # fmt: skip
    files = write_onnx(model, spec, calibration, tmp_path, 1, 4, seed=5, opset=17)
    session = ort.InferenceSession(str(tmp_path / files["deterministic"]))
    name = session.get_inputs()[0].name
    wild = x[:8].copy()
    wild[:, 0] = 1e6  # far above the training range: served as the clip bound
    at_bound = wild.copy()
    at_bound[:, 0] = processor.upper[0]
    served = session.run(None, {name: wild})[0]
    np.testing.assert_allclose(served, session.run(None, {name: at_bound})[0], rtol=1e-6)
    np.testing.assert_allclose(served.reshape(-1), model(wild).numpy().reshape(-1), atol=1e-6)

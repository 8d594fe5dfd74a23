"""Does the ONNX model answer what the Keras model answers?

Deterministic graph: max absolute difference against Keras (dropout off) on the whole test
segment and on edge cases. MC graph: its per-row mean and spread against Keras MC dropout,
statistically (both are random): many calls of each, per-row z-scores of the difference of
means, and the ratio of the average spreads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextday.export.graphs import Network


def edge_cases(x_test: np.ndarray, network: Network, seed: int) -> dict[str, np.ndarray]:
    """Inputs a served model can meet: the test rows and unusual ones."""
    rng = np.random.default_rng(seed)
    shape = x_test.shape[1:]
    sign = rng.choice([-1.0, 1.0], size=(64, *shape))
    large = network.mean + sign * 100.0 * network.divisor  # 100 s.d. from the training mean
    repeats = int(np.ceil(10_000 / len(x_test)))
    return {
        "test segment": x_test,
        "zeros": np.zeros((16, *shape)),
        "very large (mean +- 100 s.d.)": large,
        "very small (+-1e-30)": sign * 1e-30,
        "one row": x_test[:1],
        "batch of 10,000": np.tile(x_test, (repeats, *([1] * len(shape))))[:10_000],
    }


def deterministic(model, session, cases: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per case: rows, max absolute and max relative difference."""
    from nextday.models.training import predict

    rows = []
    name = session.get_inputs()[0].name
    for case, x in cases.items():
        x = np.asarray(x, dtype=np.float32)
        keras_out = predict(model, x)
        onnx_out = session.run(None, {name: x})[0].astype(np.float64).reshape(-1)
        difference = np.abs(onnx_out - keras_out)
        rows.append(
            {
                "case": case,
                "rows": len(x),
                "max_abs_diff": float(difference.max()),
                "max_rel_diff": float(np.max(difference / np.maximum(np.abs(keras_out), 1e-12))),
                "max_abs_output": float(np.abs(keras_out).max()),
            }
        )
    return pd.DataFrame(rows)


def mc(model, session, x: np.ndarray, passes: int, calls: int, seed: int) -> dict[str, float]:
    """Per-row MC mean and spread of `calls` calls of the graph vs `calls` Keras MC runs."""
    from nextday.uncertainty.mc_dropout import mc_samples

    x = np.asarray(x, dtype=np.float32)
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    onnx_mean, onnx_sd, keras_mean, keras_sd = [], [], [], []
    for call in range(calls):
        out = dict(zip(outputs, session.run(None, {name: x}), strict=True))
        onnx_mean.append(out["prediction"])
        onnx_sd.append(out["mc_sd"])
        samples = mc_samples(model, x, passes, seed + call)
        keras_mean.append(samples.mean(axis=0))
        keras_sd.append(samples.std(axis=0))
    onnx_mean, keras_mean = np.array(onnx_mean, float), np.array(keras_mean, float)
    onnx_sd, keras_sd = np.array(onnx_sd, float), np.array(keras_sd, float)
    standard_error = np.sqrt(
        (onnx_mean.var(axis=0, ddof=1) + keras_mean.var(axis=0, ddof=1)) / calls
    )
    z = (onnx_mean.mean(axis=0) - keras_mean.mean(axis=0)) / np.maximum(
        standard_error, 1e-7
    )  # float32 noise floor
    return {
        "rows": float(len(x)),
        "calls": float(calls),
        "mean_abs_z": float(np.mean(np.abs(z))),
        "share_abs_z_above_4": float(np.mean(np.abs(z) > 4.0)),
        "spread_ratio": float(onnx_sd.mean() / keras_sd.mean()),
        "mean_abs_diff_of_means": float(
            np.mean(np.abs(onnx_mean.mean(axis=0) - keras_mean.mean(axis=0)))
        ),
    }


def mc_passes(result: dict[str, float], max_share: float, spread_band) -> bool:
    low, high = spread_band
    return result["share_abs_z_above_4"] <= max_share and low <= result["spread_ratio"] <= high

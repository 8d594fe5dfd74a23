"""Does the ONNX model answer what the Keras model and the calibration answer?

Deterministic graph: max absolute difference against Keras (dropout off) on the whole test
segment and on edge cases. MC graph: its per-row mean and spread against Keras MC dropout,
statistically (both are random): many calls of each, per-row z-scores of the difference of
means, and the ratio of the average spreads. Calibration: the MC graph's calibration part
against `Calibration.apply` (its one NumPy form) on the same MC samples. float16: the float16
variant's error against float32 on the same masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.contracts import metrics as metric_names
from nextday.contracts.outputs import OUTPUTS
from nextday.evaluation.metrics import prefixed
from nextday.export import graphs, runtime
from nextday.export.graphs import Network
from nextday.export.settings import ParitySettings
from nextday.models.spec import ModelSpec
from nextday.uncertainty.calibration import Calibration, own_features, scale_columns


@dataclass(frozen=True)
class Parity:
    """Every parity result of one export."""

    deterministic: pd.DataFrame  # one row per case (`deterministic`)
    mc: dict[str, float]  # `mc`
    mc_ok: bool  # `mc_passes`
    calibration: CalibrationDifference  # `calibration_difference`
    float16: dict[str, float]  # `float16_error`

    @property
    def max_abs_diff(self) -> float:
        """The deterministic graph's largest difference from Keras over every case."""
        return float(self.deterministic["max_abs_diff"].max())

    @property
    def mc_detail(self) -> str:
        return (
            f"share of rows with |z| > 4: {self.mc['share_abs_z_above_4']:.3f}, spread ratio "
            f"ONNX/Keras {self.mc['spread_ratio']:.3f}"
        )

    @property
    def metrics(self) -> dict[str, float]:
        """The export run's parity_* and fp16_* metrics."""
        return {
            metric_names.PARITY_MAX_ABS_DIFF: self.max_abs_diff,
            "parity_test_max_abs_diff": float(self.deterministic["max_abs_diff"].iloc[0]),
            **prefixed(self.mc, "parity_mc"),
            "parity_calibration_max_abs_diff": self.calibration.max_abs,
            "parity_calibration_max_rel_diff": self.calibration.max_relative,
            "parity_calibration_sd_ulps": self.calibration.sd_ulps,
            **self.float16,
        }


def check(
    model,
    spec: ModelSpec,
    calibration: Calibration,
    folder: Path,
    files: dict[str, str],
    test_x: np.ndarray,
    seed: int,
    settings: ParitySettings,
) -> Parity:
    """Every check of the files `write_onnx` wrote to `folder` against the Keras `model` and
    the calibration: the deterministic graph on the test rows and edge cases, the MC graph
    and its calibration on the first `settings.mc_rows` test rows, float16 on every test row."""
    from nextday.models.mc_dropout import mc_samples

    passes = calibration.passes
    rows = np.asarray(test_x[: settings.mc_rows], dtype=np.float32)
    cases = edge_cases(test_x, graphs.network_of(model, spec), seed)
    table = deterministic(model, runtime.session(folder / files["deterministic"]), cases)
    mc_graph = runtime.session(folder / files["mc_optimized"])
    mc_result = mc(model, mc_graph, rows, passes, settings.mc_calls, seed)
    samples = mc_samples(model, rows, passes, seed)
    return Parity(
        deterministic=table,
        mc=mc_result,
        mc_ok=mc_passes(mc_result, settings.mc_max_share_z_above_4, settings.mc_spread_band),
        calibration=calibration_difference(
            folder / files["mc"], calibration, spec.features, samples, rows
        ),
        float16=float16_error(folder, files, test_x),
    )


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
    from nextday.models.mc_dropout import mc_samples

    x = np.asarray(x, dtype=np.float32)
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    calls_of: dict[str, list[np.ndarray]] = {"onnx": [], "onnx_sd": [], "keras": [], "keras_sd": []}
    for call in range(calls):
        out = dict(zip(outputs, session.run(None, {name: x}), strict=True))
        calls_of["onnx"].append(out["prediction"])
        calls_of["onnx_sd"].append(out["mc_sd"])
        samples = mc_samples(model, x, passes, seed + call)
        calls_of["keras"].append(samples.mean(axis=0))
        calls_of["keras_sd"].append(samples.std(axis=0))
    # calls x rows each
    onnx_mean, keras_mean, onnx_sd, keras_sd = (
        np.array(calls_of[k], float) for k in ("onnx", "keras", "onnx_sd", "keras_sd")
    )
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


def mc_passes(result: dict[str, float], max_share: float, spread_band: tuple[float, float]) -> bool:
    """Few rows whose means differ beyond noise, and a spread within the band."""
    low, high = spread_band
    return result["share_abs_z_above_4"] <= max_share and low <= result["spread_ratio"] <= high


@dataclass(frozen=True)
class CalibrationDifference:
    """The MC graph's calibration against `Calibration.apply` on the same samples, judged at
    float32's precision in two parts.

    - `sd_ulps`: the graph's MC spread against the float64 one, in float32 units in the last
      place of the row's largest sample. A spread below the samples' float32 resolution (the
      passes of a row whose dropout changes nothing) is rounding noise either way, and the
      scale reads it through log(sd): judged apart, in the samples' own units.
    - `max_relative`: the five outputs against `Calibration.outputs` of the float64 mean and
      the graph's own spread, relative to each row's sigma: the quantiles, the scale weights
      and columns, the sigma factor. float32 rounds these at a few parts in a million; a
      quantile off by 1% of its value or a wrong scale column is off by 1e-2 or more.
    `max_abs` is the plain largest |ONNX - Calibration.apply| over the five outputs."""

    max_abs: float
    max_relative: float
    sd_ulps: float


def calibration_difference(
    mc_graph: Path,
    calibration: Calibration,
    features: Sequence[str],
    samples: np.ndarray,
    x: np.ndarray,
) -> CalibrationDifference:
    """The MC graph's calibration part and the NumPy calibration on the same `samples`
    (passes x rows of `x`), as `CalibrationDifference` says. The graph computes in float32, so
    both read the samples rounded to float32."""
    import onnx

    part = runtime.session(graphs.calibration_part(onnx.load(mc_graph)).SerializeToString())
    samples = np.asarray(samples, dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    names = [o.name for o in part.get_outputs()]
    served = dict(
        zip(names, part.run(None, {graphs.SAMPLES: samples, graphs.INPUT_NAME: x}), strict=True)
    )
    columns = scale_columns(features, calibration.scale_features)
    scale_x = own_features(x)[:, columns]
    wide = samples.astype(np.float64)
    expected = calibration.apply(wide, scale_x)
    given_sd = calibration.outputs(wide.mean(axis=0), served["mc_sd"].astype(np.float64), scale_x)
    sigma = np.maximum(np.abs(given_sd["sigma"]), np.finfo(np.float32).tiny)
    relative = np.max([np.abs(served[n] - given_sd[n]) / sigma for n in OUTPUTS], axis=0)
    resolution = np.spacing(np.abs(samples).max(axis=0))
    sd_error = np.abs(served["mc_sd"] - wide.std(axis=0)) / resolution
    return CalibrationDifference(
        max_abs=max(float(np.max(np.abs(served[n] - expected[n]))) for n in OUTPUTS),
        max_relative=float(relative.max()),
        sd_ulps=float(sd_error.max()),
    )


def float16_error(folder: Path, files: dict[str, str], x: np.ndarray) -> dict[str, float]:
    """float16 vs float32 MC graph on the same rows; fresh sessions draw the same masks."""
    full = runtime.outputs(runtime.session(folder / files["mc"]), x)
    half = runtime.outputs(runtime.session(folder / files["mc_float16"]), x)
    scale = float(np.mean(np.abs(full["prediction"])))
    out = {"fp16_mean_abs_prediction_fp32": scale}
    for name in ("prediction", "sigma", "p10", "p90"):
        difference = np.abs(half[name] - full[name])
        out[f"fp16_max_abs_err_{name}"] = float(difference.max())
        out[f"fp16_mean_abs_err_{name}"] = float(difference.mean())
    return out

"""Write an export's ONNX files: MC graph, its ORT-optimized form, float16, deterministic."""

from __future__ import annotations

from pathlib import Path

from nextday.export import graphs
from nextday.models.spec import ModelSpec
from nextday.uncertainty.calibration import Calibration, scale_columns


def file_names(spec: ModelSpec, version: int) -> dict[str, str]:
    """role -> file name; `{arch}_{model}_v{version}.onnx` is the calibrated MC graph."""
    stem = f"{spec.arch}_{spec.name}_v{version}"
    return {
        "mc": f"{stem}.onnx",
        "mc_optimized": f"{stem}.optimized.onnx",
        "mc_float16": f"{stem}.fp16.onnx",
        "deterministic": f"{stem}.deterministic.onnx",
    }


def to_float16(proto):
    """The network body in float16 with float32 inputs and outputs (onnxconverter-common);
    the random draws stay float32 (the converter would retype RandomUniform's output only)."""
    from onnxconverter_common import float16

    keep = [n.name for n in proto.graph.node if n.name.startswith(graphs.MASK_SCOPE)]
    return float16.convert_float_to_float16(proto, keep_io_types=True, node_block_list=keep)


def optimize(source: Path, target: Path) -> None:
    """ONNX Runtime's graph optimizations (constant folding, Gemm and activation fusion) saved
    as a model file. EXTENDED, not ALL: the ALL level adds layout changes tied to this CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def write_onnx(
    model,
    spec: ModelSpec,
    calibration: Calibration,
    folder: Path,
    version: int,
    passes: int,
    seed: int,
    opset: int,
) -> dict[str, str]:
    """Convert `model` into the four files under `folder`; returns role -> file name."""
    import onnx

    columns = scale_columns(spec.features, calibration.scale_features)  # refuses unknown ones
    network = graphs.network_of(model, spec)
    samples = graphs.to_onnx(graphs.samples_function(network, passes, seed), opset)
    calibrated = graphs.to_onnx(
        graphs.calibration_function(network, calibration, columns, passes), opset
    )
    names = file_names(spec, version)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(graphs.join(samples, calibrated), folder / names["mc"])
    onnx.save(graphs.join(to_float16(samples), calibrated), folder / names["mc_float16"])
    onnx.save(
        graphs.to_onnx(graphs.deterministic_function(network), opset),
        folder / names["deterministic"],
    )
    optimize(folder / names["mc"], folder / names["mc_optimized"])
    return names

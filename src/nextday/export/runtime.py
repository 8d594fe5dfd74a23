"""The export's own ONNX Runtime calls (parity, float16 error, judging): CPU sessions of
its files, run in chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def session(model: Path | bytes):
    """A CPU session of an ONNX file (or of a serialized model)."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def outputs(graph, x: np.ndarray, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Every output of a one-input session on the rows of `x`, as float64."""
    name = graph.get_inputs()[0].name
    names = [o.name for o in graph.get_outputs()]
    parts = [graph.run(None, {name: x[i : i + chunk]}) for i in range(0, len(x), chunk)]
    return {
        n: np.concatenate([p[k] for p in parts]).astype(np.float64) for k, n in enumerate(names)
    }

"""Check an exported model on a GPU machine: the CUDA provider, float16 against float32, and
latency against the seed's targets (p50 under 5 ms for one row, under 20 ms for 1,024).

    pip install ".[gpu]"   # then replace onnxruntime by onnxruntime-gpu: see README, "GPU"
    python scripts/check_gpu.py models/normal/3          # a folder `nextday download` wrote
    python scripts/check_gpu.py models:/nextday-normal@production

Needs only numpy, pandas, onnxruntime-gpu and the nextday package (no TensorFlow), so it runs
where the model is served. Prints a table and writes it as JSON (`--out`, default
gpu_check.json); exits 1 when the CUDA provider is not in use or a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from nextday.inference.model import CUDA, ModelInference, local_folder

TARGETS_MS = {1: 5.0, 1024: 20.0}  # the seed's p50 targets
BATCHES = (1, 128, 1024)


def _rows(inference: ModelInference, n: int, seed: int = 0) -> np.ndarray:
    """Rows inside the training range the export recorded (the middle of each feature's)."""
    ranges = inference.metadata.serving.get("ranges", {})
    rng = np.random.default_rng(seed)
    low = np.array([ranges.get(f, [-0.01, 0.01])[0] for f in inference.features])
    high = np.array([ranges.get(f, [-0.01, 0.01])[1] for f in inference.features])
    x = low + (high - low) * rng.uniform(0.25, 0.75, size=(n, len(low)))
    return np.tile(x, inference.window).astype(np.float32)


def _latency(inference: ModelInference, x: np.ndarray, calls: int) -> tuple[float, float]:
    inference.run(x)  # warm-up: CUDA kernels and memory
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        inference.run(x)
        times.append(1000 * (time.perf_counter() - start))
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an export folder or a models:/ URI")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args(argv)
    folder = local_folder(args.model)
    fp32 = ModelInference(folder, device="cuda", float16=False)
    fp16 = ModelInference(folder, device="cuda", float16=True)
    rows = []
    # two fresh sessions draw the same dropout masks (RandomUniform is seeded per session),
    # so float16 and float32 are compared on identical masks
    x = _rows(fp32, 1024)
    a, b = fp32.run(x), fp16.run(x)
    for name in ("prediction", "sigma", "p10", "p90"):
        error = np.abs(a[name].astype(np.float64) - b[name])
        rows.append({"check": f"fp16 vs fp32 max |{name}| error", "value": float(error.max())})
    for precision, inference in (("fp32", fp32), ("fp16", fp16)):
        for n in BATCHES:
            p50, p99 = _latency(inference, _rows(inference, n), args.calls)
            target = TARGETS_MS.get(n)
            rows.append({"check": f"{precision} p50 ms, {n} rows", "value": p50, "target": target})
            rows.append({"check": f"{precision} p99 ms, {n} rows", "value": p99})
    table = pd.DataFrame(rows)
    providers = {"fp32": fp32.provider, "fp16": fp16.provider}
    print(f"providers in use: {providers}")
    print(table.to_string(index=False))
    timed = [row for row in rows if row.get("target") is not None]
    passed = all(p == CUDA for p in providers.values()) and all(
        row["value"] <= row["target"] for row in timed
    )
    with open(args.out, "w") as handle:
        json.dump({"providers": providers, "rows": rows, "passed": passed}, handle, indent=2)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

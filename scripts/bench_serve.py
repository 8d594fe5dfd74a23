"""Serving latency: an exported model answered by Keras, ONNX Runtime, ModelInference and HTTP.

One process, one exported version (the export run's `nextday.registered_model` and
`nextday.version` tags), the test rows of its prepared dataset (tiled to 1024), side by side:
- `keras_predict`: the Keras model's `model.predict(x)` (one deterministic pass);
- `keras_call`: the direct call `model(x, training=False)` (one deterministic pass);
- `keras_mc<P>`: MC dropout in Keras, `mc_samples(model, x, P, seed)` (P dropout passes, no
  calibration: the scale model and conformal step the served graph adds are left out);
- `ort_deterministic`: raw ONNX Runtime on the deterministic graph (one pass, no checks);
- `mi_mc<P>` / `mi_mc<P>_t1`: `ModelInference(folder, device="cpu").predict_batch(x)`, the
  calibrated MC graph as served (input checks, P passes, the five outputs as a DataFrame), with
  ONNX Runtime's default threads and with threads=1; `mi_row` / `mi_row_t1`: `.predict(row)`;
- `mi_online_mc<P>`: the same with the online calibration applied (`calibration=` a SQLite
  store holding a state, read once per 60 s as the server does), for a version that has one;
- `http_mc<P>`: `mlflow models serve -m models:/<name>/<version> --env-manager local` in a
  subprocess, POST /invocations with {"dataframe_split": ...} over one keep-alive session.
P is the MC graph's number of passes (metadata.json), 20 unless calibrate.passes said otherwise.
With CUDAExecutionProvider in onnxruntime, `mi_cuda_mc<P>` and `mi_cuda_fp16_mc<P>` rows too.

Each case: warm-up calls, then timed calls (at least --min-calls, --min-calls-slow for Keras
MC and predict, more while under --seconds). p50/p99 per call; rows/s = rows answered / time
spent in the timed calls. Prints a markdown table, the speed-up of ModelInference over Keras MC
and the serving goals, and logs metrics `bench_<method>_b<batch>_<p50_ms|p99_ms|rows_per_s|
peak_mem_mb>` and the table (`bench/serve.md`, `bench/serve.csv`) into the export run.
    cd <paths.root>; python scripts/bench_serve.py              # newest normal export run
    python scripts/bench_serve.py --model earnings --run-id <export run id> --no-server
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import numpy as np
import pandas as pd
import requests

BATCHES = (1, 128, 1024)
GOALS = {
    "mi_128_p50_ms": 0.5,
    "speedup_vs_keras_mc": 100.0,
    "row_p50_ms": 0.2,
    "http_128_p50_ms": 15,
    "http_vs_mi_128": 3.0,  # issue 27: the HTTP path at most 3x the model's own call
    "http_vs_mi_1": 10.0,
}
MEMORY_NOTE = {
    "inprocess": "in-process rows: growth of this process's resident set (VmHWM after the case "
    "minus VmRSS before its warm-up; the high-water mark is reset per case through "
    "/proc/self/clear_refs), so native allocations (TF, ONNX Runtime arenas) count; memory "
    "already held from earlier cases or loading is not counted again",
    "inprocess_fallback": "in-process rows: growth of this process's lifetime peak RSS "
    "(VmHWM, which could not be reset here): 0 unless a case raised the peak",
    "server": "http rows: the server's whole resident set, not growth: the sum of VmHWM over "
    "the serving process tree (the mlflow CLI and the uvicorn process that holds the model), "
    "reset through /proc/<pid>/clear_refs before each batch size's calls",
    "server_fallback": "http rows: the server's whole resident set (sum of VmHWM, its peak "
    "since start, over the serving process tree: the mlflow CLI and the uvicorn process that "
    "holds the model)",
}


# --- tracking and inputs -------------------------------------------------------------------


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the project's default under NEXTDAY_ROOT (or the cwd)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(os.environ.get("NEXTDAY_ROOT") or ".").resolve()
    return f"sqlite:///{root}/mlflow.db"


def find_export_run(client: mlflow.MlflowClient, model: str, run_id: str | None):
    if run_id:
        return client.get_run(run_id)
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = (
        "tags.`nextday.step` = 'export' and attributes.status = 'FINISHED' "
        f"and tags.`nextday.model` = '{model}'"
    )
    runs = client.search_runs(
        experiments, query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise SystemExit(
            f"no FINISHED export run of model={model} in {mlflow.get_tracking_uri()}: run "
            f"`python -m nextday export model={model}` first or pass --run-id"
        )
    return runs[0]


@dataclass
class Inputs:
    folder: Path  # the export folder (metadata.json and the ONNX files)
    metadata: dict
    keras_model: object
    x: np.ndarray  # float32 rows, at least max(batches)
    test_rows: int


def load_inputs(run, work: Path, rows: int) -> Inputs:
    from nextday.inference.model import METADATA, local_folder
    from nextday.steps.inputs import load_model, load_prepared

    tags = run.data.tags
    name, version = tags["nextday.registered_model"], tags["nextday.version"]
    folder = local_folder(f"models:/{name}/{version}")
    metadata = json.loads((folder / METADATA).read_text())
    model_id = tags.get("nextday.input.train") or tags["nextday.input.tune"]
    model = load_model(model_id, work / "model")
    prepared = load_prepared(tags["nextday.input.prepare"], work / "inputs")
    test = np.asarray(model.arrange(prepared.dataset, prepared.truth).judged["test"].x)
    reps = math.ceil(rows / len(test))
    x = np.ascontiguousarray(np.concatenate([test] * reps)[: max(rows, len(test))], np.float32)
    return Inputs(folder, metadata, model.fitted_network(), x, len(test))


# --- measuring ------------------------------------------------------------------------------


def _status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB (empty when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}


def _reset_peak(pid: int | str = "self") -> bool:
    """Reset a process's VmHWM to its current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakGrowth:
    """Peak RSS growth of this process over a block (MB)."""

    resettable: bool | None = None

    def __enter__(self) -> PeakGrowth:
        gc.collect()
        PeakGrowth.resettable = _reset_peak()
        self.before = _status()["VmRSS"]
        self.mb = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.mb = max(0, _status()["VmHWM"] - self.before) / 1024


def time_calls(
    call: Callable[[], object], warmup: int, min_calls: int, seconds: float, max_calls: int
) -> np.ndarray:
    """Per-call wall times (s): `warmup` untimed calls, then at least `min_calls` timed ones,
    more while under `seconds`, at most `max_calls`."""
    for _ in range(warmup):
        call()
    times: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    while len(times) < max_calls and (len(times) < min_calls or clock() < deadline):
        start = clock()
        call()
        times.append(clock() - start)
    return np.asarray(times, dtype=np.float64) / 1e9


def summary(method: str, batch: int, times: np.ndarray, peak_mb: float) -> dict:
    return {
        "method": method,
        "batch": batch,
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "rows_per_s": batch * len(times) / float(times.sum()),
        "peak_mem_mb": peak_mb,
        "calls": len(times),
    }


# --- the HTTP server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def _program(pid: int) -> str:
    """What a process runs, short: `mlflow models serve`, `uvicorn`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return "?"
    if "python" in Path(argv[0]).name and len(argv) > 1:
        argv = argv[1:]
    name = Path(argv[0]).name
    return " ".join([name, *argv[1:3]]) if name == "mlflow" else name


class Server:
    """`mlflow models serve` on a free loopback port, started now, ready after wait()."""

    def __init__(
        self,
        model_uri: str,
        uri: str,
        log_path: Path,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        command = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
        command += ["models", "serve", "-m", model_uri, "--env-manager", "local"]
        command += ["-h", "127.0.0.1", "-p", str(self.port), "-w", str(workers)]
        self.command = " ".join(command)
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        # the CLI runs `uvicorn` from PATH: this interpreter's environment first
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (the server writes it until stop() closes it)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.session = requests.Session()
        self.ready_s = float("nan")

    def wait(self, timeout: float) -> None:
        while time.perf_counter() - self.started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}): {self.tail()}")
            for path in ("/ping", "/health"):
                try:
                    if self.session.get(self.url + path, timeout=1).status_code == 200:
                        self.ready_s = time.perf_counter() - self.started
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.25)
        raise RuntimeError(f"the server did not answer /ping in {timeout:.0f} s: {self.tail()}")

    def tail(self, lines: int = 1) -> str:
        """The last lines of the server's log."""
        self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " / ".join(text[-lines:])

    def pids(self) -> list[int]:
        return _tree(self.process.pid)

    def reset_peak(self) -> bool:
        return all([_reset_peak(pid) for pid in self.pids()])

    def peak_mb(self) -> float:
        return sum(_status(pid).get("VmHWM", 0) for pid in self.pids()) / 1024

    def breakdown(self) -> str:
        return "; ".join(
            f"pid {pid} ({_program(pid)}) VmRSS {_status(pid).get('VmRSS', 0) / 1024:.0f} MB, "
            f"VmHWM {_status(pid).get('VmHWM', 0) / 1024:.0f} MB"
            for pid in self.pids()
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the server's process group, and wait until every process of it is gone
        (a worker writes the prediction log's buffer before it exits), SIGKILL after
        `timeout` seconds."""
        self.session.close()
        if self.process.poll() is None:
            tree = self.pids()
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # the group this script started
                self.process.wait(timeout=timeout)
                deadline = time.perf_counter() + timeout
                while any(Path(f"/proc/{pid}").exists() for pid in tree):
                    if time.perf_counter() > deadline:
                        raise subprocess.TimeoutExpired(self.command, timeout)
                    time.sleep(0.1)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self.log.close()


# --- the cases ------------------------------------------------------------------------------


@dataclass
class Case:
    method: str
    make: Callable[[np.ndarray], Callable[[], object]]  # batch rows -> a call
    batches: tuple[int, ...] = BATCHES
    slow: bool = False  # fewer calls are enough (Keras MC and predict)


def cases(inputs: Inputs, passes: int, seed: int, cuda: bool, notes: list[str]) -> list[Case]:
    import onnxruntime as ort

    from nextday.inference.model import ModelInference, RuntimeOptions
    from nextday.models.mc_dropout import mc_samples

    model, folder = inputs.keras_model, inputs.folder
    deterministic = ort.InferenceSession(
        str(folder / inputs.metadata["files"]["deterministic"]),
        providers=["CPUExecutionProvider"],
    )
    input_name = deterministic.get_inputs()[0].name
    served = {
        "": ModelInference(folder, device="cpu"),
        "_t1": ModelInference(folder, device="cpu", runtime=RuntimeOptions(threads=1)),
    }
    out = [
        Case("keras_predict", lambda x: lambda: model.predict(x, verbose=0), slow=True),
        Case("keras_call", lambda x: lambda: np.asarray(model(x, training=False))),
        Case(f"keras_mc{passes}", lambda x: lambda: mc_samples(model, x, passes, seed), slow=True),
        Case("ort_deterministic", lambda x: lambda: deterministic.run(None, {input_name: x})),
    ]
    for suffix, inference in served.items():
        out.append(
            Case(f"mi_mc{passes}{suffix}", lambda x, m=inference: lambda: m.predict_batch(x))
        )
        out.append(
            Case(
                f"mi_row{suffix}", lambda x, m=inference: lambda: m.predict(x[0].reshape(-1)), (1,)
            )
        )
    online = online_inference(folder)
    if online is not None:
        out.append(Case(f"mi_online_mc{passes}", lambda x: lambda: online.predict_batch(x)))
    else:
        notes.append("no mi_online row: the version serves the static interval")
    if cuda:
        for tag, half in (("cuda", False), ("cuda_fp16", True)):
            inference = ModelInference(folder, device="cuda", float16=half)
            notes.append(
                f"mi_{tag}_mc{passes}: ModelInference(device='cuda', float16={half}) on "
                f"{inference.file.name}, session providers {inference.session.get_providers()}"
            )
            out.append(
                Case(f"mi_{tag}_mc{passes}", lambda x, m=inference: lambda: m.predict_batch(x))
            )
    return out


def online_inference(folder: Path):
    """ModelInference applying a stored online state (m = 1.2 in every bucket) from a SQLite
    store in a temporary folder, or None for a version without an online rule."""
    from dataclasses import replace

    from nextday.data.store import Store
    from nextday.inference.model import ModelInference
    from nextday.uncertainty.stored_state import TABLE, CalibrationStore, state_rows

    plain = ModelInference(folder, device="cpu")
    if plain.online is None:
        return None
    url = f"sqlite:///{tempfile.mkdtemp(prefix='nextday-bench-')}/state.db"
    store = Store(url)
    store.create()
    start = plain.online.start()
    state = replace(start, multiplier=(1.2,) * len(start.multiplier), through="2000-01-03")
    store.upsert(TABLE, state_rows(state, plain.name, plain.version))
    return ModelInference(folder, device="cpu", calibration=CalibrationStore(url, ttl=60.0))


def http_body(x: np.ndarray, columns: list[str]) -> bytes:
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return json.dumps({"dataframe_split": {"columns": columns, "data": flat.tolist()}}).encode()


def bench_http(
    server: Server, x: np.ndarray, columns, method, args, make_body=http_body
) -> tuple[list[dict], bool]:
    """The HTTP rows, and whether the server's peak could be reset for each batch."""
    rows, resettable = [], True
    headers = {"Content-Type": "application/json"}
    for batch in args.batches:
        body = make_body(x[:batch], columns)

        def call(body=body):
            response = server.session.post(server.url + "/invocations", data=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
            return response.content

        answer = json.loads(call())["predictions"]
        if len(answer) != batch:
            raise RuntimeError(f"the server answered {len(answer)} rows for {batch}")
        gc.collect()
        resettable &= server.reset_peak()
        times = time_calls(call, args.warmup, args.min_calls, args.seconds, args.max_calls)
        rows.append(summary(method, batch, times, server.peak_mb()))
    return rows, resettable


# --- the HTTP path, stage by stage -----------------------------------------------------------

STAGES = (
    ("json", "MLflow decodes the request body (json.loads, twice: _parse_json_data, then "
     "_split_data_and_params)"),
    ("to_frame", "MLflow builds the input DataFrame (infer_and_parse_data, with the schema)"),
    ("schema", "MLflow enforces the signature (_enforce_schema)"),
    ("our_checks", "our key checks and the checked float32 array (check_keys, to_array, "
     "the range check)"),
    ("graph", "the ONNX MC graph (LoadedVersion.run)"),
    ("answer", "the output DataFrame"),
    ("log_enqueue", "the prediction log's enqueue (PredictionLogger.log, a SQLite store)"),
    ("response", "MLflow writes the response (predictions_to_json)"),
    ("invocations", "all of the above as MLflow calls it (scoring_server.invocations), "
     "in this process"),
)  # fmt: skip


def keyed_body(x: np.ndarray, columns: list[str], start: int = 0) -> bytes:
    """A dataframe_split request with the optional keys: rows to be logged."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    data = [[*row, f"S{start + i:06d}", "2024-03-01"] for i, row in enumerate(flat.tolist())]
    split = {"columns": [*columns, "symbol", "date"], "data": data}
    return json.dumps({"dataframe_split": split}).encode()


def stage_rows(model_uri: str, x: np.ndarray, columns: list[str], work: Path, args) -> list[dict]:
    """What each stage of the server's request path costs, in this process: MLflow's own
    functions on the same body the HTTP rows send (with keys), and ModelInference's parts."""
    from nextday.inference.prediction_log import PredictionLogger
    from nextday.inference.pyfunc import LOG_URL_ENV

    os.environ.pop(LOG_URL_ENV, None)  # the pyfunc loads without a logger: one is timed apart
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    # enqueue only: nothing writes while the stages are timed (the buffer stays bounded)
    logger = PredictionLogger(f"sqlite:///{work}/log.db", background=False)
    rows = []
    for batch in args.batches:
        calls = stage_calls(pyfunc, logger, keyed_body(x[:batch], columns))
        for stage, call in calls.items():
            times = time_calls(call, args.warmup, args.min_calls, args.seconds, args.max_calls)
            rows.append(summary(f"stage_{stage}", batch, times, float("nan")))
    return rows


def stage_calls(pyfunc, logger, body: bytes) -> dict[str, Callable[[], object]]:
    """One call per STAGES entry, each on the outputs of the stages before it."""
    from io import StringIO

    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc import scoring_server as scoring

    from nextday.inference.checks import check_keys, to_array
    from nextday.inference.pyfunc import KEY_COLUMNS

    schema = pyfunc.metadata.get_input_schema()
    inference = pyfunc.unwrap_python_model().inference
    loaded = inference._current
    parsed = scoring._split_data_and_params(body)[0]
    frame = scoring.infer_and_parse_data(parsed, schema)
    enforced = _enforce_schema(frame, schema)
    features = enforced.drop(columns=list(KEY_COLUMNS))
    array = to_array(features, loaded.features, loaded.window)
    answer = inference.predict_batch(features)
    out = loaded.run(array)
    keys = check_keys(enforced[list(KEY_COLUMNS)], len(array))
    logged = pd.DataFrame({"symbol": keys["symbol"].to_numpy(), "ts": keys["ts"].to_numpy()})
    logged = logged.assign(
        model_name=loaded.name,
        model_version=loaded.version,
        predicted=answer["prediction"].to_numpy(),
        **{k: answer[k].to_numpy() for k in ("sigma", "p10", "p50", "p90")},
        latency_ms=0.5,
    )

    def our_checks() -> None:
        check_keys(enforced[list(KEY_COLUMNS)], len(array))
        inference._check_range(loaded, to_array(features, loaded.features, loaded.window))

    return {
        "json": lambda: (scoring._decode_json_input(body), scoring._split_data_and_params(body)),
        "to_frame": lambda: scoring.infer_and_parse_data(parsed, schema),
        "schema": lambda: _enforce_schema(frame, schema),
        "our_checks": our_checks,
        "graph": lambda: loaded.run(array),
        "answer": lambda: pd.DataFrame({k: out[k].astype(np.float64) for k in out}),
        "log_enqueue": lambda: logger.log(logged),
        "response": lambda: scoring.predictions_to_json(answer, StringIO()),
        "invocations": lambda: scoring.invocations(body, "application/json", pyfunc, schema),
    }


# --- report ---------------------------------------------------------------------------------


def markdown(table: pd.DataFrame) -> str:
    columns = ["method", "batch", "p50_ms", "p99_ms", "rows_per_s", "peak_mem_mb"]
    lines = ["| " + " | ".join(columns) + " |", "|---|---:|---:|---:|---:|---:|"]
    for row in table.itertuples():
        lines.append(
            f"| {row.method} | {row.batch} | {row.p50_ms:.3f} | {row.p99_ms:.3f} | "
            f"{row.rows_per_s:,.0f} | {row.peak_mem_mb:.1f} |"
        )
    return "\n".join(lines)


def goals(table: pd.DataFrame, passes: int) -> tuple[list[str], dict[str, float]]:
    def p50(method: str, batch: int) -> float:
        found = table[(table["method"] == method) & (table["batch"] == batch)]["p50_ms"]
        return float(found.iloc[0]) if len(found) else float("nan")

    mi, keras_mc = f"mi_mc{passes}", f"keras_mc{passes}"
    lines, ratios = ["Speed-up, p50 of Keras MC / ModelInference MC (same rows, same passes):"], {}
    for batch in sorted(table["batch"].unique()):
        for suffix in ("", "_t1"):
            ratio = p50(keras_mc, batch) / p50(mi + suffix, batch)
            ratios[f"bench_speedup_{mi}{suffix}_vs_{keras_mc}_b{batch}"] = ratio
            lines.append(f"- batch {batch}: {mi}{suffix} {ratio:,.0f}x")
    speedup = ratios.get(f"bench_speedup_{mi}_vs_{keras_mc}_b128", float("nan"))
    checks = [
        (f"{mi} (ModelInference, ORT default threads), 128 rows, p50 < 0.5 ms",
         p50(mi, 128), GOALS["mi_128_p50_ms"], "ms", True),
        (f"{mi} >= 100x faster than {keras_mc} at 128 rows (p50 ratio)",
         speedup, GOALS["speedup_vs_keras_mc"], "x", False),
        ("one row, ModelInference.predict (mi_row), p50 < 0.2 ms",
         p50("mi_row", 1), GOALS["row_p50_ms"], "ms", True),
        (f"HTTP round trip (http_mc{passes}), 128 rows, p50 < 15 ms",
         p50(f"http_mc{passes}", 128), GOALS["http_128_p50_ms"], "ms", True),
        (f"HTTP p50 / {mi} p50, 128 rows, at most 3x",
         p50(f"http_mc{passes}", 128) / p50(mi, 128), GOALS["http_vs_mi_128"], "x", True),
        (f"HTTP p50 / {mi} p50, one row, at most 10x",
         p50(f"http_mc{passes}", 1) / p50(mi, 1), GOALS["http_vs_mi_1"], "x", True),
    ]  # fmt: skip
    lines.append("Goals:")
    for text, value, target, unit, below in checks:
        if not np.isfinite(value):
            verdict = "NOT MEASURED"
        else:
            verdict = "MET" if (value <= target if below else value >= target) else "MISSED"
        lines.append(f"- {text}: {value:,.3f} {unit} -> {verdict}")
    if passes != 20:
        lines.append(f"(the exported MC graph has {passes} passes, not 20: goals read for it)")
    lines += stage_lines(table, passes, p50)
    return lines, ratios


def stage_lines(table: pd.DataFrame, passes: int, p50) -> list[str]:
    """Each stage's p50 as a share of the HTTP round trip of the same keyed body; what is
    left (uvicorn, FastAPI, MLflow's middleware and thread hand-off, the client) apart."""
    if not table["method"].str.startswith("stage_").any():
        return []
    lines = ["", "The HTTP path, stage by stage (p50 ms, share of the keyed HTTP round trip):"]
    for batch in sorted(table["batch"].unique()):
        http = p50(f"http_keys_mc{passes}", batch)
        parts = [(name, p50(f"stage_{name}", batch)) for name, _ in STAGES]
        whole = dict(parts)["invocations"]
        shown = [
            f"{name} {ms:.3f} ({ms / http:.0%})" if np.isfinite(http) else f"{name} {ms:.3f}"
            for name, ms in parts
            if name != "invocations"
        ]
        server = f"; server and client around it {http - whole:.3f} ({(http - whole) / http:.0%})"
        lines.append(
            f"- {batch} rows, HTTP {http:.3f}: "
            + ", ".join(shown)
            + f"; invocations {whole:.3f}"
            + (server if np.isfinite(http) else "")
        )
    lines += [f"  - {name}: {what}" for name, what in STAGES]
    return lines


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError, AttributeError):
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1)
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.machine()}"


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="normal", help="normal or earnings")
    parser.add_argument("--run-id", help="the export run (default: the newest finished one)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls per case")
    parser.add_argument("--min-calls", type=int, default=200, help="timed calls per case, least")
    parser.add_argument("--min-calls-slow", type=int, default=50, help="least for Keras MC/predict")
    parser.add_argument("--max-calls", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=1.0, help="time more calls until then")
    parser.add_argument("--no-server", action="store_true", help="skip the HTTP rows")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage breakdown")
    parser.add_argument("--server-timeout", type=float, default=180.0)
    parser.add_argument("--no-log", action="store_true", help="print only; log nothing to MLflow")
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    run = find_export_run(client, args.model, args.run_id)
    tags = run.data.tags
    if "nextday.registered_model" not in tags or "nextday.version" not in tags:
        raise SystemExit(f"run {run.info.run_id} has no registered version tags: not an export")
    model_uri = f"models:/{tags['nextday.registered_model']}/{tags['nextday.version']}"
    print(f"export run {run.info.run_id}: {model_uri} ({uri})", flush=True)

    notes: list[str] = []
    table_rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="nextday-bench-serve-") as scratch:
        work = Path(scratch)
        server = None
        if not args.no_server:  # starts while this process loads the models and rows
            server = Server(model_uri, uri, work / "server.log")
        try:
            rss0 = _status()["VmRSS"]
            inputs = load_inputs(run, work, max(args.batches))
            loaded_mb = (_status()["VmRSS"] - rss0) / 1024
            passes = int(inputs.metadata["mc"]["passes"])
            seed = int(inputs.metadata["mc"]["seed"])
            import onnxruntime as ort

            providers = ort.get_available_providers()
            cuda = "CUDAExecutionProvider" in providers
            if not cuda:
                notes.append(
                    f"onnxruntime offers {providers}, no CUDAExecutionProvider: the "
                    'ModelInference(device="cuda") and float16=True rows are skipped'
                )
                print("note: " + notes[-1], flush=True)
            rss1 = _status()["VmRSS"]
            all_cases = cases(inputs, passes, seed, cuda, notes)
            notes.append(
                f"resident after loading: Keras model, TF and the rows +{loaded_mb:.0f} MB, "
                f"ONNX Runtime sessions +{(_status()['VmRSS'] - rss1) / 1024:.0f} MB "
                "(not in peak_mem_mb)"
            )
            http_ready = False
            if server is not None:  # ready (and idle) before anything is timed
                try:
                    server.wait(args.server_timeout)
                    http_ready = True
                    print(f"server ready {server.ready_s:.1f} s after start", flush=True)
                except RuntimeError as error:
                    notes.append(f"HTTP rows skipped: {error}")
                    print("note: " + notes[-1], flush=True)
                    print(f"server log (last lines): {server.tail(30)}", flush=True)
                    server.stop()
            for case in all_cases:
                for batch in [b for b in args.batches if b in case.batches]:
                    call = case.make(inputs.x[:batch])
                    least = args.min_calls_slow if case.slow else args.min_calls
                    with PeakGrowth() as peak:
                        times = time_calls(call, args.warmup, least, args.seconds, args.max_calls)
                    table_rows.append(summary(case.method, batch, times, peak.mb))
                    print(
                        f"{case.method:<20} b{batch:<5} p50 {table_rows[-1]['p50_ms']:9.3f} ms "
                        f"({len(times)} calls)",
                        flush=True,
                    )
            notes.append(
                MEMORY_NOTE["inprocess" if PeakGrowth.resettable else "inprocess_fallback"]
            )
            if not args.no_stages:
                columns = inputs.metadata["input_columns"]
                stages = stage_rows(model_uri, inputs.x, columns, work, args)
                table_rows += stages
                for row in stages:
                    print(f"{row['method']:<20} b{row['batch']:<5} p50 {row['p50_ms']:9.3f} ms")
            if http_ready:
                columns = inputs.metadata["input_columns"]
                rows, resettable = bench_http(server, inputs.x, columns, f"http_mc{passes}", args)
                if not args.no_stages:  # the stages' body: with keys (logged when a log is set)
                    keyed, _ = bench_http(
                        server, inputs.x, columns, f"http_keys_mc{passes}", args, keyed_body
                    )
                    rows += keyed
                table_rows += rows
                for row in rows:
                    print(f"{row['method']:<20} b{row['batch']:<5} p50 {row['p50_ms']:9.3f} ms")
                notes.append(
                    f"server: `{server.command}`, ready (/ping) {server.ready_s:.1f} s after "
                    f"start (while this process loaded Keras and the rows); after the HTTP "
                    f"rows: {server.breakdown()}"
                )
                notes.append(MEMORY_NOTE["server" if resettable else "server_fallback"])
                notes.append(
                    "http rows: round trip of a pre-serialized JSON body over one "
                    "keep-alive requests.Session (client JSON encoding excluded, response "
                    "read but not parsed)"
                )
        finally:
            if server is not None:
                server.stop()

    table = pd.DataFrame(table_rows)
    table["order"] = table["method"].map({m: i for i, m in enumerate(dict.fromkeys(table.method))})
    table = table.sort_values(["batch", "order"], kind="stable").drop(columns="order")
    table = table.reset_index(drop=True)
    goal_lines, ratios = goals(table, passes)
    tiled = ", tiled" if inputs.test_rows < max(args.batches) else ""
    header = [
        f"# Serving latency: {model_uri} (export run {run.info.run_id})",
        "",
        f"Machine: {machine()}; onnxruntime {ort.__version__} ({', '.join(providers)}), "
        f"mlflow {mlflow.__version__}, python {platform.python_version()}. Rows: the "
        f"{inputs.test_rows:,} test rows of the prepared dataset{tiled}; "
        f"MC graph: {passes} passes. Load average (1 min) at start {load_start:.2f}, at end "
        f"{os.getloadavg()[0]:.2f}: other processes on the machine share its cores.",
        "",
    ]
    legend = [
        "keras_predict: model.predict(x); keras_call: model(x, training=False); "
        f"keras_mc{passes}: mc_samples(model, x, {passes}, seed) (no calibration); "
        "ort_deterministic: raw InferenceSession on the deterministic graph; "
        f"mi_mc{passes}: ModelInference(device='cpu').predict_batch(x) (calibrated MC graph, "
        "as served), ORT default threads; *_t1: threads=1; mi_row: ModelInference.predict(row); "
        f"mi_online_mc{passes}: mi_mc{passes} with a stored online state applied (read every "
        "60 s); "
        f"http_mc{passes}: POST /invocations to mlflow models serve. rows_per_s: rows answered "
        "per second of timed calls (one call at a time); p50/p99 over the timed calls (counts in "
        f"the notes) after {args.warmup} warm-up calls.",
    ]
    calls = ", ".join(f"{r.method} b{r.batch}: {r.calls}" for r in table.itertuples())
    report = "\n".join(
        [
            *header,
            markdown(table),
            "",
            *legend,
            "",
            *goal_lines,
            "",
            "Notes:",
            *[f"- {n}" for n in notes],
            f"- timed calls: {calls}",
        ]
    )
    print()
    print(report)

    if args.no_log:
        return
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = [
        Metric(f"bench_{r.method}_b{r.batch}_{field}", float(getattr(r, field)), stamp, 0)
        for r in table.itertuples()
        for field in ("p50_ms", "p99_ms", "rows_per_s", "peak_mem_mb")
        if np.isfinite(getattr(r, field))
    ]
    metrics += [Metric(k, v, stamp, 0) for k, v in ratios.items() if np.isfinite(v)]
    for start in range(0, len(metrics), 500):
        client.log_batch(run.info.run_id, metrics=metrics[start : start + 500])
    client.log_text(run.info.run_id, report + "\n", "bench/serve.md")
    client.log_text(run.info.run_id, table.to_csv(index=False), "bench/serve.csv")
    client.set_tag(run.info.run_id, "nextday.bench.serve.machine", machine())
    print(f"\nlogged {len(metrics)} metrics and bench/serve.md, .csv to run {run.info.run_id}")


if __name__ == "__main__":
    main()

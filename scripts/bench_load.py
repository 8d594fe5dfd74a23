"""Load and faults against `mlflow models serve`: many concurrent requests, then the logging
database killed in the middle of them.

    python scripts/bench_load.py                     # after `make main` (or main experiment=quick)
    python scripts/bench_load.py --requests 200      # a shorter run

- load: `--requests` requests of `--rows` rows at `--concurrency` against the server with 1
  and with 2 workers: errors, p50/p99 latency and rows per second.
- fault: the same load with prediction logging into a throwaway PostgreSQL server, which is
  killed (immediate shutdown) a third of the way in and started again on its port after
  `--outage` seconds. Every request carries distinct (symbol, date) keys, so every row must
  end up in model_predictions: failed requests and lost log rows are counted.

Prints the table and logs it to MLflow (experiment nextday-bench). Everything runs on
loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_postgres
from bench_serve import Server, find_export_run, tracking_uri
from nextday.contracts import tags
from nextday.data.store import Store
from nextday.inference import ModelInference


def body(columns: list[str], rows: np.ndarray, request: int | None) -> bytes:
    frame = pd.DataFrame(rows, columns=columns)
    if request is not None:  # keys: one distinct (symbol, date) per row of the whole run
        frame["symbol"] = [f"R{request:05d}S{i:03d}" for i in range(len(frame))]
        frame["date"] = "2024-03-01"
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})


def run_load(url: str, bodies: list[bytes], concurrency: int, during=None) -> dict:
    """POST every body, `concurrency` at a time; `during(done)` is called as requests end."""
    local = threading.local()
    latencies: list[float] = []
    errors: list[str] = []
    done = [0]
    lock = threading.Lock()

    def post(payload: bytes) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        try:
            answer = session.post(
                f"{url}/invocations",
                data=payload,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            ok = answer.status_code == 200
            message = f"HTTP {answer.status_code}: {answer.text[:200]}"
        except requests.RequestException as error:
            ok, message = False, f"{type(error).__name__}: {error}"
        with lock:
            latencies.append(1000 * (time.perf_counter() - start))
            if not ok:
                errors.append(message)
            done[0] += 1
            count = done[0]
        if during is not None:
            during(count)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, bodies))
    seconds = time.perf_counter() - started
    return {
        "requests": len(bodies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="normal")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the database is away")
    parser.add_argument("--no-log", action="store_true", help="print only; log nothing to MLflow")
    args = parser.parse_args()

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    run = find_export_run(mlflow.MlflowClient(), args.model, None)
    model_uri = f"models:/{run.data.tags[tags.REGISTERED_MODEL]}/{run.data.tags[tags.VERSION]}"
    inference = ModelInference(model_uri, device="cpu")
    columns = inference.metadata.input_columns
    ranges = inference.metadata.serving.get("ranges", {})
    low = np.array([ranges.get(c, [0.0, 0.01])[0] for c in columns])
    high = np.array([ranges.get(c, [0.0, 0.01])[1] for c in columns])
    rng = np.random.default_rng(0)
    rows = low + (high - low) * rng.uniform(0.3, 0.7, size=(args.rows, len(columns)))
    plain = [body(columns, rows, None)] * args.requests
    results = []
    with tempfile.TemporaryDirectory(prefix="nextday-bench-load-") as scratch:
        work = Path(scratch)
        for workers in (1, 2):
            server = Server(model_uri, uri, work / f"server-{workers}.log", workers=workers)
            try:
                server.wait(240)
                run_load(server.url, plain[: 4 * args.concurrency], args.concurrency)  # warm-up
                result = run_load(server.url, plain, args.concurrency)
            finally:
                server.stop()
            results.append({"case": f"load, {workers} worker(s)", **result})
            print(results[-1], flush=True)

        folder = Path(tempfile.mkdtemp(prefix="nextday-bench-load-pg-"))
        folder.chmod(0o755)
        try:
            pg_url = local_postgres.start(folder)
            port = int(pg_url.rsplit(":", 1)[1].split("/")[0])
            Store(pg_url).create()
            keyed = [body(columns, rows, i) for i in range(args.requests)]
            env = {"NEXTDAY_PREDICTION_LOG_URL": pg_url, "NEXTDAY_ROOT": str(work)}
            server = Server(model_uri, uri, work / "server-fault.log", workers=1, env=env)
            outage = {"killed": False}

            def kill_and_restart(done: int) -> None:
                if done >= args.requests // 3 and not outage["killed"]:
                    outage["killed"] = True
                    local_postgres.stop(folder)
                    threading.Timer(
                        args.outage, lambda: local_postgres.start(folder, port=port)
                    ).start()

            try:
                server.wait(240)
                result = run_load(server.url, keyed, args.concurrency, during=kill_and_restart)
                time.sleep(args.outage + 3)  # the database is back; the logger catches up
            finally:
                server.stop()  # SIGTERM: the logger writes what it still holds, then exits
            expected = args.requests * args.rows
            deadline = time.time() + 60
            while True:
                try:
                    logged = int(Store(pg_url).count("model_predictions"))
                except Exception:
                    logged = -1
                if logged >= expected or time.time() > deadline:
                    break
                time.sleep(1)
            rejected = work / "logs" / "rejected_predictions.jsonl"
            dead = len(rejected.read_text().splitlines()) if rejected.exists() else 0
            results.append(
                {
                    "case": f"fault: database away {args.outage:.0f} s mid-load",
                    **result,
                    "rows_sent": expected,
                    "rows_logged": logged,
                    "rows_lost": expected - max(logged, 0) - dead,
                    "rows_dead_lettered": dead,
                }
            )
            print(results[-1], flush=True)
        finally:
            local_postgres.stop(folder)
            shutil.rmtree(folder, ignore_errors=True)

    table = pd.DataFrame(results).set_index("case")
    table["rows_per_s"] = table["requests"] * args.rows / table["seconds"]
    shown = table.drop(columns=["first_error"]).round(1)
    print(shown.to_string())
    if not args.no_log:
        mlflow.set_experiment("nextday-bench")
        with mlflow.start_run(run_name="bench-load"):
            mlflow.set_tag("nextday.step", "bench")
            mlflow.log_params(
                {
                    "model": model_uri,
                    "requests": args.requests,
                    "rows": args.rows,
                    "concurrency": args.concurrency,
                    "cpus": os.cpu_count(),
                }
            )
            mlflow.log_text(table.to_csv(), "bench_load.csv")


if __name__ == "__main__":
    main()

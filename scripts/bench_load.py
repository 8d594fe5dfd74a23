"""Load and faults against `mlflow models serve`: many concurrent requests, then the logging
database killed in the middle of them.

    python scripts/bench_load.py                     # after `make main` (or main experiment=quick)
    python scripts/bench_load.py --requests 200      # a shorter run

- load: `--requests` requests of `--rows` rows at `--concurrency` against the server with 1
  and with 2 workers, each with ONNX Runtime's default threads (one per core, spinning) and
  with the served default (one intra-op thread, no spinning; NEXTDAY_ORT_THREADS and
  NEXTDAY_ORT_SPINNING): errors, p50/p99 latency and rows per second.
- fault: the same load with prediction logging into a throwaway PostgreSQL server, which is
  killed (immediate shutdown) a third of the way in and started again on its port after
  `--outage` seconds. Every request carries distinct (symbol, date) keys, so every row must
  end up in model_predictions: failed requests and lost log rows are counted.

- switch: the same keyed load, logged, against 2 workers serving `models:/<name>@bench-switch`
  (NEXTDAY_FOLLOW_ALIAS=bench-switch, checked every --follow-s seconds): a third of the way
  in the alias moves to another exported version of the model (a promotion), two thirds in
  back (a rollback). Counted: failed requests, lost log rows, rows answered by each version,
  requests whose rows were not all answered by one version (0: no half-switched request),
  and, from the log's created_at, how long after each move the first row of the new version
  came and the last row of the old one went (both workers follow on their own). It needs a
  second exported version (`python -m nextday export export.seed=7 export.promote=false`
  makes one); its own alias, deleted afterwards, leaves `production` where it was.

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

# ONNX Runtime in each server process (read by the served model, nextday.inference.pyfunc)
RUNTIMES = {
    "ORT default threads": {"NEXTDAY_ORT_THREADS": "0", "NEXTDAY_ORT_SPINNING": "1"},
    "1 thread, no spinning": {"NEXTDAY_ORT_THREADS": "1", "NEXTDAY_ORT_SPINNING": "0"},
}


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


def load_cases(args, uri: str, model_uri: str, columns, rows, work: Path) -> list[dict]:
    """Plain requests (no keys, nothing logged) at 1 and 2 workers, each ONNX Runtime setting."""
    plain = [body(columns, rows, None)] * args.requests
    results = []
    for workers in (1, 2):
        for runtime, env in RUNTIMES.items():
            log = work / f"server-{workers}-{len(results)}.log"
            server = Server(model_uri, uri, log, workers=workers, env=env)
            try:
                server.wait(240)
                run_load(server.url, plain[: 4 * args.concurrency], args.concurrency)  # warm-up
                result = run_load(server.url, plain, args.concurrency)
            finally:
                server.stop()
            results.append({"case": f"load, {workers} worker(s), {runtime}", **result})
    return results


def fault_case(args, uri: str, model_uri: str, columns, rows, work: Path) -> list[dict]:
    """Keyed requests logged into PostgreSQL, which is killed a third of the way in."""
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
    finally:
        local_postgres.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
    return [
        {
            "case": f"fault: database away {args.outage:.0f} s mid-load",
            **result,
            "rows_sent": expected,
            "rows_logged": logged,
            "rows_lost": expected - max(logged, 0) - dead,
            "rows_dead_lettered": dead,
        }
    ]


SWITCH_ALIAS = "bench-switch"


def switch_case(args, uri: str, model_uri: str, columns, rows, work: Path) -> list[dict]:
    """The keyed load while the followed alias moves to another version and back."""
    client = mlflow.MlflowClient()
    name, first = model_uri.removeprefix("models:/").rsplit("/", 1)
    numbers = {int(v.version) for v in client.search_model_versions(f"name = '{name}'")}
    others = numbers - {int(first)}
    if not others:
        print(
            f"switch case skipped: {name} has one version; make another with `python -m "
            "nextday export export.seed=7 export.promote=false`",
            flush=True,
        )
        return []
    second = str(max(others))
    folder = Path(tempfile.mkdtemp(prefix="nextday-bench-switch-pg-"))
    folder.chmod(0o755)
    moves: list[tuple[str, float]] = []
    lock = threading.Lock()  # `move` is called from the client's threads
    client.set_registered_model_alias(name, SWITCH_ALIAS, first)
    try:
        pg_url = local_postgres.start(folder)
        Store(pg_url).create()
        keyed = [body(columns, rows, i) for i in range(args.requests)]
        env = {
            "NEXTDAY_PREDICTION_LOG_URL": pg_url,
            "NEXTDAY_ROOT": str(work),
            "NEXTDAY_FOLLOW_ALIAS": SWITCH_ALIAS,
            "NEXTDAY_FOLLOW_ALIAS_S": str(args.follow_s),
        }
        server = Server(
            f"models:/{name}@{SWITCH_ALIAS}", uri, work / "server-switch.log", workers=2, env=env
        )

        planned = [(args.requests // 3, second), (2 * args.requests // 3, first)]

        def move(done: int) -> None:
            with lock:
                if len(moves) < len(planned) and done >= planned[len(moves)][0]:
                    version = planned[len(moves)][1]
                    # the log's created_at clock: the local wall clock, naive
                    moves.append((version, pd.Timestamp.now().value / 1e9))
                    client.set_registered_model_alias(name, SWITCH_ALIAS, version)

        try:
            server.wait(240)
            result = run_load(server.url, keyed, args.concurrency, during=move)
        finally:
            server.stop()  # the loggers write what they hold before the workers exit
        logged = Store(pg_url).read("model_predictions")
    finally:
        client.delete_registered_model_alias(name, SWITCH_ALIAS)
        local_postgres.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
    return [
        {
            "case": f"switch: v{first} -> v{second} -> v{first} mid-load, 2 workers",
            **result,
            **switch_figures(logged, moves, args.requests * args.rows),
        }
    ]


def switch_figures(logged: pd.DataFrame, moves: list[tuple[str, float]], sent: int) -> dict:
    """Rows by version, requests answered by two versions, and how long each move took to
    reach the log (its created_at, the server's local wall clock, as the moves' times)."""
    request = logged["symbol"].str.slice(0, 6)  # R<request>: one request's rows
    figures = {
        "rows_sent": sent,
        "rows_logged": len(logged),
        "rows_lost": sent - len(logged),
        "requests_mixed": int((logged.groupby(request)["model_version"].nunique() > 1).sum()),
    }
    for version, count in logged["model_version"].value_counts().sort_index().items():
        figures[f"rows_v{version}"] = int(count)
    created = (pd.to_datetime(logged["created_at"]) - pd.Timestamp(0)).dt.total_seconds()
    for k, (version, at) in enumerate(moves):
        until = moves[k + 1][1] if k + 1 < len(moves) else np.inf
        window = (created >= at) & (created < until)
        new = created[window & (logged["model_version"] == version)]
        old = created[window & (logged["model_version"] != version)]
        figures[f"move{k + 1}_first_new_s"] = float(new.min() - at) if len(new) else np.nan
        figures[f"move{k + 1}_last_old_s"] = float(old.max() - at) if len(old) else 0.0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="normal")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the database is away")
    parser.add_argument("--follow-s", type=float, default=1.0, help="the switch case's check")
    parser.add_argument("--cases", default="load,fault,switch", help="which cases, in order")
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
    cases = {"load": load_cases, "fault": fault_case, "switch": switch_case}
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; choose from {list(cases)}")
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="nextday-bench-load-") as scratch:
        work = Path(scratch)
        for case in chosen:
            for result in cases[case](args, uri, model_uri, columns, rows, work):
                results.append(result)
                print(result, flush=True)

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

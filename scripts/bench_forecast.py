"""The daily run end to end: one `forecast` day for 1,000 symbols with 5 years in the store.

In a temp folder (or --root) the built-in market is prepared at --symbols x --years (every
other setting the default's), both models are trained (--epochs epochs: quality does not
matter here), calibrated (the default MC-20 graph) and exported with the gate relaxed so that
both become @production; then `run_forecast(cfg())` runs for --days consecutive sessions (the
built-in market continues one session per run) in a child process, so that its peak RSS is the
forecast's alone (no training in it), with the model cache (NEXTDAY_MODEL_CACHE) empty at the
start: the first day is cold (registry download, ONNX Runtime sessions, lazy imports), the
next ones warm. One more session then runs in a second fresh process with the cache on disk
(what each evening's `python -m nextday forecast` is): its row also gives the process's whole
wall time, imports included (`process_s`).

Per day: the wall time around `run_forecast`, each stage from the run's `forecast_seconds_*`
metrics (plan and models on the first day's run, then update, outcomes, features, score,
book, write; `other` = wall - their sum: composing the config, the report and MLflow's
logging), the symbols scored and the peak RSS (VmHWM, else getrusage) of the forecasting
process so far. Prints a table, the ratio of warm to cold and the goal (< 30 s a day), and
logs it to MLflow (experiment nextday-bench).
    python scripts/bench_forecast.py                               # 1,000 symbols x 5 years
    python scripts/bench_forecast.py --symbols 50 --years 2 --days 2 --epochs 1
    python scripts/bench_forecast.py --root /tmp/fc --keep          # keep the root for profiling
    python scripts/bench_forecast.py --root /tmp/fc --no-setup --profile /tmp/fc/day.prof
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import pandas as pd

GOAL_S = 30.0
STAGES = ("plan", "models", "update", "outcomes", "features", "score", "book", "write")
MODELS = ("normal", "earnings")
RELAXED = (
    "export.gate.significance=1.0",
    "export.gate.coverage_band=[0.0,1.0]",
    "export.gate.online_score_slack=1.0",
)
MLFLOW_RUN_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


def overrides_for(args) -> list[str]:
    """The benchmark's market, its training cut short, and the caller's extra overrides."""
    return [
        f"data.n_symbols={args.symbols}",
        f"data.years={args.years}",
        *args.overrides,
    ]


def training_overrides(args) -> list[str]:
    """Training cost only (the served graph stays the default: calibrate and export as they
    are): few epochs, a smaller tree baseline and permutation importance."""
    return [
        f"model.max_epochs={args.epochs}",
        f"train.baselines.tree.max_iter={args.tree_iter}",
        "train.importance.max_rows=5000",
        "train.importance.repeats=1",
    ]


def composer(root: Path, base: list[str]):
    from nextday.config import compose

    return lambda *more: compose([*base, f"paths.root={root}", *more])


# --- setup: prepare, train, calibrate, export both models ----------------------------------


def setup(root: Path, base: list[str], train: list[str]) -> dict[str, float]:
    import mlflow

    from nextday.export import registry
    from nextday.steps.calibrate import run_calibrate
    from nextday.steps.export import run_export
    from nextday.steps.prepare import run_prepare
    from nextday.steps.train import run_train

    cfg = composer(root, base)
    seconds: dict[str, float] = {}

    def timed(name: str, call) -> None:
        start = time.perf_counter()
        call()
        seconds[name] = time.perf_counter() - start
        print(f"setup: {name} {seconds[name]:.0f} s", flush=True)

    timed("prepare", lambda: run_prepare(cfg()))
    for model in MODELS:
        timed(f"train_{model}", lambda m=model: run_train(cfg(f"model={m}", *train)))
        timed(f"calibrate_{model}", lambda m=model: run_calibrate(cfg(f"model={m}")))
        timed(f"export_{model}", lambda m=model: run_export(cfg(f"model={m}", *RELAXED)))
    client = mlflow.MlflowClient()
    for model in MODELS:
        name = registry.registered_name(str(cfg().export.registered_model_prefix), model)
        if registry.version_by_alias(client, name, registry.PRODUCTION) is None:
            raise SystemExit(f"{name} has no @production version after export: see its run")
    return seconds


# --- the forecast days, in a child process -------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MiB: VmHWM of /proc/self/status, which
    belongs to the process's own address space. getrusage's ru_maxrss is the fallback only:
    on Linux it keeps the parent's resident set at fork across the child's exec (here the
    parent's, after training: several GiB that the forecast never used)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forecast_days(root: Path, base: list[str], days: int, kind: str, out: Path, profile: str):
    """Run `days` forecast sessions in this process, one JSON line per day into `out`."""
    import mlflow

    from nextday.steps.forecast import run_forecast

    cfg = composer(root, base)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    with out.open("a") as sink:
        for index in range(days):
            last = index == days - 1
            context = profiler if (profiler is not None and last) else contextlib.nullcontext()
            start = time.perf_counter()
            with context:
                ids = run_forecast(cfg())
            wall = time.perf_counter() - start
            run = mlflow.get_run(ids[-1])
            metrics = run.data.metrics
            stages = {s: metrics.get(f"forecast_seconds_{s}", float("nan")) for s in STAGES}
            row = {
                "kind": kind if index == 0 else "warm",
                "as_of": run.data.tags.get("nextday.as_of", ""),
                "wall_s": wall,
                **stages,
                "other": wall - sum(v for v in stages.values() if v == v),  # NaN: not run
                "symbols": int(metrics.get("forecast_symbols", 0)),
                "scored": int(metrics.get("forecast_scored", 0)),
                "skipped": int(metrics.get("forecast_skipped", 0)),
                "peak_rss_mb": peak_rss_mb(),
            }
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(f"day {row['as_of']} ({row['kind']}): {wall:.1f} s", flush=True)
    if profiler is not None:
        profiler.dump_stats(profile)
        print(f"cProfile of the last day -> {profile}", flush=True)


def child(root: Path, base: list[str], days: int, kind: str, out: Path, env, profile="") -> float:
    """The forecast days in a fresh process; returns its whole wall time."""
    start = time.perf_counter()
    command = [
        sys.executable, __file__, "--_child", str(root), "--days", str(days), "--_kind", kind,
        "--_out", str(out), "--_profile", profile, "--", *base,
    ]  # fmt: skip
    subprocess.run(command, env=env, check=True)
    return time.perf_counter() - start


# --- the table -----------------------------------------------------------------------------


def read_days(out: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    table = pd.DataFrame(rows)
    table.index = pd.Index([f"day {i + 1}" for i in range(len(table))], name="day")
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Cold, warm (median over the warm days) and the fresh-process day side by side."""
    columns = ["wall_s", *STAGES, "other", "symbols", "peak_rss_mb"]
    rows = {}
    for kind in ("cold", "warm", "fresh process"):
        part = table[table["kind"] == kind]
        if len(part):
            rows[kind if kind != "warm" else f"warm (median of {len(part)})"] = part[
                columns
            ].median()
    frame = pd.DataFrame(rows).T
    frame["vs_cold"] = frame["wall_s"] / frame["wall_s"].iloc[0]
    frame["vs_goal"] = frame["wall_s"] / GOAL_S
    return frame


def markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, float) and abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join([frame.index.name or "", *map(str, frame.columns)]) + " |"
    lines = [header, "|" + "---|" * (len(frame.columns) + 1)]
    for name, row in frame.iterrows():
        lines.append("| " + " | ".join([str(name), *(cell(v) for v in row.tolist())]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--days", type=int, default=3, help="sessions in the first process")
    parser.add_argument("--epochs", type=int, default=1, help="model.max_epochs of both models")
    parser.add_argument("--tree-iter", type=int, default=30, help="the tree baseline's max_iter")
    parser.add_argument("--root", help="paths.root (default: a temp folder, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temp root")
    parser.add_argument("--no-setup", action="store_true", help="--root already holds the setup")
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh-process day")
    parser.add_argument("--profile", default="", help="cProfile the last day into this file")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_kind", default="cold", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    parser.add_argument("--_profile", default="", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", default=[], help="extra Hydra overrides")
    args = parser.parse_args()
    if args._child:
        forecast_days(
            Path(args._child), args.overrides, args.days, args._kind, Path(args._out),
            args._profile,
        )  # fmt: skip
        return

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    if tracking_uri.startswith("sqlite:///") and not tracking_uri.startswith("sqlite:////"):
        path = tracking_uri.removeprefix("sqlite:///")  # relative to where the script started
        tracking_uri = f"sqlite:///{Path(path).resolve()}"
    for name in MLFLOW_RUN_VARIABLES:
        os.environ.pop(name, None)
    made = args.root is None
    root = Path(args.root or tempfile.mkdtemp(prefix="nextday-bench-forecast-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["NEXTDAY_ROOT"] = str(root)
    base = overrides_for(args)
    train = training_overrides(args)
    try:
        setup_s: dict[str, float] = {}
        if not args.no_setup:
            setup_s = setup(root, base, train)
        cache = root / "model-cache"
        shutil.rmtree(cache, ignore_errors=True)  # the first day downloads the versions
        env = {**os.environ, "NEXTDAY_MODEL_CACHE": str(cache)}
        out = root / "bench_forecast_days.jsonl"
        out.unlink(missing_ok=True)
        child(root, base, args.days, "cold", out, env, args.profile)
        process_s = float("nan")
        if not args.no_fresh:
            process_s = child(root, base, 1, "fresh process", out, env)
        days = read_days(out)
    finally:
        if made and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif made:
            print(f"root kept: {root}")

    table = summary(days)
    if "fresh process" in table.index:
        table["process_s"] = float("nan")
        table.loc["fresh process", "process_s"] = process_s
    shown = days.drop(columns=["skipped"]).round(2)
    print(
        f"\n{args.symbols:,} symbols x {args.years} years, both models, "
        f"{os.cpu_count()} CPUs; goal < {GOAL_S:.0f} s a day"
    )
    if setup_s:
        print("setup: " + ", ".join(f"{k} {v:.0f} s" for k, v in setup_s.items()))
    print(shown.to_string())
    print()
    print(table.round(2).to_string())
    worst = table["wall_s"].max()
    print(f"goal (< {GOAL_S:.0f} s a day): {'met' if worst < GOAL_S else 'missed'}")

    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("nextday-bench")
    with mlflow.start_run(run_name="bench-forecast"):
        mlflow.set_tag("nextday.step", "bench")
        mlflow.log_params(
            {
                "overrides": " ".join([*base, *train]),
                "symbols": args.symbols,
                "years": args.years,
                "days": len(days),
                "cpus": os.cpu_count(),
            }
        )
        mlflow.log_metrics({f"setup_{k}_s": v for k, v in setup_s.items()})
        for name, row in table.iterrows():
            key = name.split(" (")[0].replace(" ", "_")
            mlflow.log_metrics({f"{key}_{c}": float(v) for c, v in row.items() if pd.notna(v)})
        mlflow.log_metric("goal_met", float(worst < GOAL_S))
        mlflow.log_text(days.round(3).to_csv(), "bench_forecast_days.csv")
        mlflow.log_text(table.round(3).to_csv(), "bench_forecast.csv")
        mlflow.log_text(markdown(table.round(2)), "bench_forecast.md")


if __name__ == "__main__":
    main()

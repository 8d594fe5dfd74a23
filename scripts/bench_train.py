"""Training throughput: the project's training path beside a plain `keras.Model.fit`.

Both fit the same network (same spec, feature processor, batch size and rows) for the same epochs on one
prepared dataset, one after the other in this process; then (unless --no-full) the project's
`train` step runs to early stopping and its wall time is reported. Prints a table and logs it
to MLflow (experiment nextday-bench).
    python scripts/bench_train.py                      # the seed's scale (experiment=full)
    python scripts/bench_train.py --epochs 2 data.n_symbols=200
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import mlflow
import pandas as pd

from nextday.config import compose
from nextday.models.data import arrange
from nextday.models.networks import build_network, loss_function
from nextday.models.processor import FeatureProcessor
from nextday.models.spec import model_spec
from nextday.models.training import fit, seed_everything
from nextday.steps.inputs import load_prepared
from nextday.steps.prepare import run_prepare
from nextday.steps.train import run_train
from nextday.tracking import configure


def _throughput(label: str, run, rows: int, epochs: int) -> dict:
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return {
        "path": label,
        "epochs": epochs,
        "seconds": seconds,
        "samples_per_s": rows * epochs / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--no-full", action="store_true", help="skip the train-to-early-stopping run"
    )
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args()
    tracking_uri = os.environ.pop("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    overrides = ["experiment=full", *args.overrides]
    with tempfile.TemporaryDirectory(prefix="nextday-bench-train-") as folder:
        cfg = compose([*overrides, f"paths.root={folder}"])
        prepare_id = run_prepare(cfg)
        configure(cfg)
        prepared = load_prepared(prepare_id, Path(folder) / "in")
        spec = model_spec(cfg)
        data = arrange(spec, prepared.dataset, prepared.truth)
        processor = FeatureProcessor.fit(spec.features, data.train_flat, data.train.y)
        bench_spec = spec.__class__(
            **{**spec.__dict__, "max_epochs": args.epochs, "patience": 10**6}
        )
        rows = len(data.train)

        def project():
            seed_everything(spec.seed, bool(cfg.train.deterministic))
            fit(
                build_network(spec, processor),
                bench_spec,
                data.train,
                data.val,
                steps_per_execution=int(cfg.train.steps_per_execution),
            )

        def plain():
            seed_everything(spec.seed, bool(cfg.train.deterministic))
            model = build_network(spec, processor)
            model.compile(
                optimizer=keras.optimizers.Adam(spec.learning_rate), loss=loss_function(spec)
            )
            model.fit(
                data.train.x,
                data.train.y,
                sample_weight=data.train.weight,
                validation_data=(data.val.x, data.val.y, data.val.weight),
                batch_size=spec.batch_size,
                epochs=args.epochs,
                verbose=0,
            )

        table = pd.DataFrame(
            [
                _throughput("plain keras fit", plain, rows, args.epochs),
                _throughput("nextday fit", project, rows, args.epochs),
            ]
        ).set_index("path")
        table["ratio_vs_plain"] = (
            table["samples_per_s"] / table.loc["plain keras fit", "samples_per_s"]
        )
        full = {}
        if not args.no_full:
            start = time.perf_counter()
            run_id = run_train(
                compose([*overrides, f"paths.root={folder}", f"inputs.prepare_run_id={prepare_id}"])
            )
            configure(cfg)
            metrics = mlflow.get_run(run_id).data.metrics
            full = {
                "train_step_wall_s": time.perf_counter() - start,
                "epochs_run": metrics["epochs_run"],
                "best_epoch": metrics["best_epoch"],
                "test_mae": metrics["test_mae"],
                "test_ic": metrics["test_ic"],
                "oracle_test_ic": metrics.get("oracle_test_ic", float("nan")),
            }
    print(f"{rows:,} training rows, batch {spec.batch_size}, {os.cpu_count()} CPUs")
    print(table.round(3).to_string())
    for key, value in full.items():
        print(f"{key}: {value:.4g}")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("nextday-bench")
    with mlflow.start_run(run_name="bench-train"):
        mlflow.set_tag("nextday.step", "bench")
        mlflow.log_params(
            {"overrides": " ".join(overrides), "train_rows": rows, "batch_size": spec.batch_size}
        )
        for path, row in table.iterrows():
            key = path.replace(" ", "_")
            mlflow.log_metrics(
                {
                    f"{key}_samples_per_s": row["samples_per_s"],
                    f"{key}_ratio": row["ratio_vs_plain"],
                }
            )
        mlflow.log_metrics(full)
        mlflow.log_text(table.round(3).to_csv(), "bench_train.csv")


if __name__ == "__main__":
    main()

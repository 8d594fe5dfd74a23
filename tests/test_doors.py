"""Both doors into the same runs: `mlflow run .` without `--experiment-name` puts its runs in
MLflow's `Default` experiment, `python -m nextday` in the configured `nextday`; a step through
either finds the other's inputs, and says where it looked when there are none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_step_through_python_finds_the_input_mlflow_run_made_in_default(root):
    env = {
        **os.environ,
        "NEXTDAY_ROOT": str(root),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
    }
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    prepare = subprocess.run(
        ["mlflow", "run", str(ROOT), "-e", "prepare", "--env-manager", "local",
         "-P", "overrides=experiment=quick"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert prepare.returncode == 0, prepare.stderr[-3000:]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (made,) = mlflow.search_runs(experiment_names=["Default"], output_format="list")
    assert made.data.tags["nextday.step"] == "prepare"

    train = subprocess.run(
        [sys.executable, "-m", "nextday", "train", "experiment=quick"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    (trained,) = mlflow.search_runs(
        experiment_names=["nextday"],
        filter_string="tags.`nextday.step` = 'train'",
        output_format="list",
    )
    assert trained.data.tags["nextday.input.prepare"] == made.info.run_id


def test_a_missing_input_names_every_experiment_it_looked_in(root, quick_cfg):
    from nextday.steps.train import run_train

    with pytest.raises(
        LookupError, match=r"no finished 'prepare' run in the experiment 'nextday' or 'Default'"
    ):
        run_train(quick_cfg)

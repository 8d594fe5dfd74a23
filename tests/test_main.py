"""`main` on the quick preset: every step a child run, linked to its inputs, both models
registered."""

from __future__ import annotations

import mlflow

from nextday.config import compose
from nextday.steps.main import run_main


def test_main_chains_every_step_and_registers_both_models(root):
    runs = run_main(compose(["experiment=quick", f"paths.root={root}"]), ["experiment=quick"])
    assert set(runs) == {
        "prepare",
        *(
            f"{step}.{model}"
            for step in ("train", "calibrate", "export", "backtest")
            for model in ("normal", "earnings")
        ),
    }
    client = mlflow.MlflowClient()
    for model in ("normal", "earnings"):
        export = client.get_run(runs[f"export.{model}"])
        assert export.data.tags["nextday.input.calibrate"] == runs[f"calibrate.{model}"]
        assert export.data.tags["nextday.input.train"] == runs[f"train.{model}"]
        assert export.data.tags["nextday.input.prepare"] == runs["prepare"]
        assert export.data.tags["mlflow.parentRunId"]
        version = client.get_model_version(f"nextday-{model}", export.data.tags["nextday.version"])
        assert version.run_id == export.info.run_id
        # promoted or not, the decision and its reasons are on the version
        assert version.tags["nextday.gate"]
        backtest = client.get_run(runs[f"backtest.{model}"])
        assert backtest.data.tags["nextday.backtest.model"] == f"runs:/{export.info.run_id}/model"
        assert "bt_mae" in backtest.data.metrics

"""`main` on the quick preset: every step a child run, linked to its inputs, both models
registered."""

from __future__ import annotations

import mlflow
import pytest

from conftest import quick_root
from nextday.config import compose
from nextday.steps.main import run_main


def _main(root, *overrides: str) -> dict[str, str]:
    chosen = ["experiment=quick", *overrides]
    return run_main(compose([*chosen, f"paths.root={root}"]), chosen)


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    root = tmp_path_factory.mktemp("main")
    with quick_root(root):
        yield root, _main(root)


def test_main_chains_every_step_and_registers_both_models(chained):
    _, runs = chained
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


def test_main_reuses_steps_already_run_with_the_same_inputs_config_and_code(chained):
    from nextday.steps.main import REUSE_TAG

    root, first = chained
    with quick_root(root):
        again = _main(root)
        assert again == first  # every step reused: the same runs
        client = mlflow.MlflowClient()
        parent = client.search_runs(
            [client.get_run(first["prepare"]).info.experiment_id],
            "tags.`nextday.step` = 'main'",
            order_by=["attributes.start_time DESC"],
        )[0]
        assert parent.data.tags["nextday.reused"] == ", ".join(first)
        assert client.get_run(first["train.normal"]).data.tags[REUSE_TAG]

        # a calibration setting changes: prepare and train are kept, the rest runs again
        changed = _main(root, "calibrate.passes=6")
        kept = {"prepare", "train.normal", "train.earnings"}
        assert {step for step in first if changed[step] == first[step]} == kept
        calibrate = client.get_run(changed["calibrate.normal"])
        assert calibrate.data.params["calibrate.passes"] == "6"
        assert calibrate.data.tags["nextday.input.train"] == first["train.normal"]

"""`main` on the quick preset: every step a child run, linked to its inputs, both models
registered."""

from __future__ import annotations

import logging

import mlflow
import pytest

from conftest import quick_root
from nextday.config import compose
from nextday.contracts import metrics as metric_names
from nextday.contracts import tags
from nextday.reuse import Chain
from nextday.steps.main import run_main
from nextday.tracking import step_run

pytestmark = pytest.mark.slow(seconds=120)


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
    # every step run holds the metrics the contract says it writes, for whoever reads them
    for label, run_id in runs.items():
        logged = client.get_run(run_id).data.metrics
        assert not metric_names.missing(label.split(".")[0], logged), label
    # the summary table on main's run: every step ran, with its key figure
    parent = export.data.tags["mlflow.parentRunId"]
    table = mlflow.artifacts.load_text(f"runs:/{parent}/summary.md")
    for label in runs:
        assert f"| {label} | ran | " in table, label
    assert "test coverage of the 80% interval " in table and "Sharpe after costs " in table


def _read(run_id: str) -> set[str]:
    """The config groups the step of `run_id` read, as main tagged them."""
    return set(mlflow.MlflowClient().get_run(run_id).data.tags[tags.CONFIG_READ].split(","))


def test_main_reuses_steps_already_run_with_the_same_inputs_config_and_code(chained, caplog):
    root, first = chained
    caplog.set_level(logging.INFO, logger="nextday.steps.main")
    with quick_root(root):
        again = _main(root)
        assert again == first  # every step reused: the same runs
        assert "main: summary" in caplog.text and "| train.normal | reused | " in caplog.text
        client = mlflow.MlflowClient()
        parent = client.search_runs(
            [client.get_run(first["prepare"]).info.experiment_id],
            "tags.`nextday.step` = 'main'",
            order_by=["attributes.start_time DESC"],
        )[0]
        assert parent.data.tags["nextday.reused"] == ", ".join(first)
        assert client.get_run(first["train.normal"]).data.tags[tags.REUSE_KEY]
        assert {"model", "train", "calibrate"} <= _read(first["calibrate.normal"])

        # a group no step of main reads (live: the simulated live period) changes nothing
        assert not any("live" in _read(run_id) for run_id in first.values())
        assert _main(root, "live.days=5") == first

        # a calibration setting changes: prepare and train are kept, the rest runs again
        changed = _main(root, "calibrate.passes=6")
        kept = {"prepare", "train.normal", "train.earnings"}
        assert {step for step in first if changed[step] == first[step]} == kept
        calibrate = client.get_run(changed["calibrate.normal"])
        assert calibrate.data.params["calibrate.passes"] == "6"
        assert calibrate.data.tags["nextday.input.train"] == first["train.normal"]


def test_a_refit_backtest_runs_again_when_a_calibrate_setting_changes(chained):
    """The refit backtest calibrates its folds as calibrate does, and every backtest replays
    the online rule of `calibrate.online`, so it reads `calibrate`: a calibrate setting changed
    means it runs again, although its input (the exported model) is the same; a group it does
    not read (live) leaves it reused."""
    from nextday.steps.backtest import run_backtest

    root, first = chained
    export, fixed = first["export.normal"], first["backtest.normal"]
    with quick_root(root) as cfg, step_run(cfg(), "main") as parent:
        chain = Chain(parent, reuse=True, store_has_data=lambda: True)
        inputs = {"export": export}

        def composed(*overrides: str):
            return cfg("model=normal", f"backtest.model=runs:/{export}/model", *overrides)

        def reusable(*overrides: str) -> str | None:
            return chain.reusable("backtest", "backtest.normal", composed(*overrides), inputs)

        assert reusable() == fixed  # the key main gave it
        assert reusable("calibrate.seed=7") is None
        assert reusable("live.days=5") == fixed
        refit = ("backtest.mode=refit", "backtest.segments=[test]", "backtest.refit_every=1000")
        refitted = chain.step("backtest", "backtest.normal", run_backtest, composed(*refit), inputs)
        assert refitted != fixed and "calibrate" in _read(refitted)
        assert reusable(*refit) == refitted
        assert reusable(*refit, "calibrate.seed=7") is None  # so chain.step runs it again
        assert reusable(*refit, "live.days=5") == refitted

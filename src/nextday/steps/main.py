"""`main`: the whole chain, each step as its own (child) MLflow run, linked to its inputs.

Prepare, then for both models (normal, then earnings): train, calibrate, export (register,
promote if the gate passes) and backtest the exported version.
"""

from __future__ import annotations

import logging

import mlflow
from omegaconf import DictConfig

from nextday.config import compose
from nextday.steps.backtest import run_backtest
from nextday.steps.calibrate import run_calibrate
from nextday.steps.export import run_export
from nextday.steps.prepare import run_prepare
from nextday.steps.train import run_train
from nextday.tracking import step_run

log = logging.getLogger(__name__)

MODELS = ("normal", "earnings")


def run_main(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, str]:
    """Run every step in order under one parent run; return the step -> run id map.

    `overrides` are the user's Hydra overrides; each model's steps compose them with
    `model=<name>` (the user's `model.*` keys still apply to both models).
    """
    overrides = [o for o in (overrides or []) if not o.startswith("model=")]
    with step_run(cfg, "main") as parent:
        runs = {"prepare": run_prepare(cfg)}
        for model in MODELS:
            model_cfg = compose(
                [*overrides, f"model={model}", f"inputs.prepare_run_id={runs['prepare']}"]
            )
            runs[f"train.{model}"] = run_train(model_cfg)
            calibrate_cfg = compose(
                [*overrides, f"model={model}", f"inputs.model_run_id={runs[f'train.{model}']}"]
            )
            runs[f"calibrate.{model}"] = run_calibrate(calibrate_cfg)
            export_cfg = compose(
                [
                    *overrides,
                    f"model={model}",
                    f"inputs.calibrate_run_id={runs[f'calibrate.{model}']}",
                ]
            )
            runs[f"export.{model}"] = run_export(export_cfg)
            # the version just exported, promoted or not: its walk-forward record
            backtest_cfg = compose(
                [
                    *overrides,
                    f"model={model}",
                    f"backtest.model=runs:/{runs[f'export.{model}']}/model",
                ]
            )
            runs[f"backtest.{model}"] = run_backtest(backtest_cfg)
        mlflow.set_tags({f"nextday.run.{step}": run_id for step, run_id in runs.items()})
        log.info("main: %s (parent run %s)", runs, parent.info.run_id)
        return runs

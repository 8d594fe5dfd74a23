"""`main`: the whole chain, each step as its own (child) MLflow run.

Today the chain is prepare; train, calibrate, export and backtest join it as they land.
"""

from __future__ import annotations

import logging

import mlflow
from omegaconf import DictConfig

from nextday.steps.prepare import run_prepare
from nextday.tracking import step_run

log = logging.getLogger(__name__)


def run_main(cfg: DictConfig) -> dict[str, str]:
    """Run every step in order under one parent run; return the step -> run id map."""
    with step_run(cfg, "main") as parent:
        runs = {"prepare": run_prepare(cfg)}
        mlflow.set_tags({f"nextday.run.{step}": run_id for step, run_id in runs.items()})
        log.info("main: %s (parent run %s)", runs, parent.info.run_id)
        return runs

"""Every step `python -m nextday` runs, declared once: its name, what it does (the usage
text), the function that runs it, and for the model steps of `main`'s chain the step run it
consumes and the override that names that run.

The CLI's table and usage text and `main`'s chain are built from STEPS; a test checks that
MLproject has one entry point per step and that the docs name no other. A step's module is
imported only when the step runs, so `versions` or `promote` does not load TensorFlow.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from nextday.contracts import artifacts


@dataclass(frozen=True)
class Step:
    name: str
    summary: str  # the usage text's line(s); a newline continues it, indented
    function: str  # "module:function", called with the composed config
    consumes: str | None = None  # in main's chain: the step whose run this one reads
    input_override: str | None = None  # the override naming that run ({} is its id)
    takes_overrides: bool = False  # also given the user's overrides (it composes more configs)

    def load(self) -> Callable:
        module, _, function = self.function.partition(":")
        return getattr(importlib.import_module(module), function)


STEPS: tuple[Step, ...] = (
    Step(
        "prepare",
        "load a data source, validate, build features/labels/splits, log the dataset",
        "nextday.steps.prepare:run_prepare",
    ),
    Step(
        "train",
        "fit one model (model=normal|earnings, arch=mlp|lstm) and judge it beside baselines",
        "nextday.steps.train:run_train",
        consumes="prepare",
        input_override="inputs.prepare_run_id={}",
    ),
    Step(
        "tune",
        "an Optuna study (trials as nested MLflow runs), then the best config retrained",
        "nextday.steps.tune:run_tune",
        takes_overrides=True,
    ),
    Step(
        "calibrate",
        "MC-dropout intervals made to hold (scale model + conformal) for a trained model",
        "nextday.steps.calibrate:run_calibrate",
        consumes="train",
        input_override="inputs.model_run_id={}",
    ),
    Step(
        "export",
        "ONNX graphs checked against Keras, a registered version, promoted if the gate passes",
        "nextday.steps.export:run_export",
        consumes="calibrate",
        input_override="inputs.calibrate_run_id={}",
    ),
    Step(
        "backtest",
        "walk-forward over the val+test days: forecasts, a long-short strategy, regimes",
        "nextday.steps.backtest:run_backtest",
        # main backtests the version just exported, promoted or not
        consumes="export",
        input_override=f"backtest.model=runs:/{{}}/{artifacts.SERVED_MODEL.path}",
    ),
    Step(
        "monitor",
        "actuals, rolling MAE, coverage and drift of logged predictions; alerts",
        "nextday.steps.monitor:run_monitor",
    ),
    Step(
        "forecast",
        "the daily run after a close: new bars into the store, tomorrow's forecasts from\n"
        "the production versions, the book and orders (forecast.as_of=, .session=pre_open)",
        "nextday.steps.forecast:run_forecast",
    ),
    Step(
        "live",
        "the daily run replayed over simulated days of the built-in market (a regime\n"
        "change planted), each followed by the monitor's update",
        "nextday.steps.live:run_live",
    ),
    Step(
        "main",
        "run the whole chain, each step as its own MLflow run",
        "nextday.steps.main:run_main",
        takes_overrides=True,
    ),
    Step(
        "versions",
        "list the registered versions: aliases, stage, the gate's decision, test MAE",
        "nextday.steps.registry_commands:run_versions",
    ),
    Step(
        "promote",
        "make a registered version production: promote model=normal version=3",
        "nextday.steps.registry_commands:run_promote",
    ),
    Step(
        "rollback",
        "production back to the previous version (or version=N)",
        "nextday.steps.registry_commands:run_rollback",
    ),
    Step(
        "download",
        "fetch a version (version=N or alias=production) into models/<model>/<version>/",
        "nextday.steps.registry_commands:run_download",
    ),
)

BY_NAME = {step.name: step for step in STEPS}

# what the CLI does itself, without a run
SHOW = Step("show", "print the composed config and exit", "")


def model_chain() -> tuple[Step, ...]:
    """`main`'s steps for each model, in order: each consumes the one before (train the
    prepare run)."""
    chain, upstream = [], "prepare"
    while following := [s for s in STEPS if s.consumes == upstream]:
        (step,) = following
        chain.append(step)
        upstream = step.name
    return tuple(chain)


def usage() -> str:
    width = max(len(step.name) for step in (*STEPS, SHOW)) + 1
    lines = []
    for step in (*STEPS, SHOW):
        first, *more = step.summary.split("\n")
        lines.append(f"  {step.name:<{width}}{first}")
        lines += [f"  {'':<{width}}{line}" for line in more]
    return "steps:\n" + "\n".join(lines)

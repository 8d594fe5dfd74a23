"""`python -m nextday <step> [hydra overrides...]`: the same code `mlflow run . -e <step>` runs."""

from __future__ import annotations

import logging
import os
import sys

from omegaconf import OmegaConf

USAGE = """usage: python -m nextday <step> [key=value ...]

steps:
  prepare   load a data source, validate, build features/labels/splits, log the dataset
  train     fit one model (model=normal|earnings, arch=mlp|lstm) and judge it beside baselines
  tune      an Optuna study (trials as nested MLflow runs), then the best config retrained
  calibrate MC-dropout intervals made to hold (scale model + conformal) for a trained model
  export    ONNX graphs checked against Keras, a registered version, promoted if the gate passes
  backtest  walk-forward over the val+test days: forecasts, a long-short strategy, regimes
  monitor   actuals, rolling MAE, coverage and drift of logged predictions; alerts
  forecast  the daily run after a close: new bars into the store, tomorrow's forecasts from
            the production versions, the book and orders (forecast.as_of=, .session=pre_open)
  live      the daily run replayed over simulated days of the built-in market (a regime
            change planted), each followed by the monitor's update
  main      run the whole chain, each step as its own MLflow run
  versions  list the registered versions: aliases, stage, the gate's decision, test MAE
  promote   make a registered version production: promote model=normal version=3
  rollback  production back to the previous version (or version=N)
  download  fetch a version (version=N or alias=production) into models/<model>/<version>/
  show      print the composed config and exit

examples:
  python -m nextday prepare experiment=quick
  python -m nextday prepare data=csv data.path='prices/*.csv' store=postgres
  python -m nextday forecast data=csv data.path='prices/*.csv' store=postgres
"""


# steps that compose further configs from the user's overrides (one per model or trial)
STEPS_TAKING_OVERRIDES = ("main", "tune")


def _steps():
    from nextday.steps.backtest import run_backtest
    from nextday.steps.calibrate import run_calibrate
    from nextday.steps.export import run_export
    from nextday.steps.forecast import run_forecast
    from nextday.steps.live import run_live
    from nextday.steps.main import run_main
    from nextday.steps.monitor import run_monitor
    from nextday.steps.prepare import run_prepare
    from nextday.steps.registry_commands import (
        run_download,
        run_promote,
        run_rollback,
        run_versions,
    )
    from nextday.steps.train import run_train
    from nextday.steps.tune import run_tune

    return {
        "prepare": run_prepare,
        "train": run_train,
        "tune": run_tune,
        "calibrate": run_calibrate,
        "export": run_export,
        "backtest": run_backtest,
        "forecast": run_forecast,
        "monitor": run_monitor,
        "live": run_live,
        "main": run_main,
        "versions": run_versions,
        "promote": run_promote,
        "rollback": run_rollback,
        "download": run_download,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if argv else 2
    step, overrides = argv[0], [a for a in argv[1:] if a.strip()]
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # clean logs
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("alembic", "mlflow.store", "urllib3", "matplotlib", "tf2onnx", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # TF warns about retracing when trials build new models: expected, not actionable
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from nextday.config import RefusedConfigError, compose

    try:
        cfg = compose(overrides)
    except RefusedConfigError as error:
        print(f"nextday: {error}", file=sys.stderr)
        return 2
    if step == "show":
        print(OmegaConf.to_yaml(cfg))
        return 0
    steps = _steps()
    if step not in steps:
        print(
            f"unknown step {step!r}: expected one of {', '.join(steps)} or show\n", file=sys.stderr
        )
        print(USAGE, file=sys.stderr)
        return 2
    from nextday.daily import ForecastRefused

    try:
        if step in STEPS_TAKING_OVERRIDES:
            steps[step](cfg, overrides)
        else:
            steps[step](cfg)
    except ForecastRefused as refusal:  # a guard of the daily run: nothing was written
        print(f"nextday {step}: {refusal}", file=sys.stderr)
        return 2
    return 0

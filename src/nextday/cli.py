"""`python -m nextday <step> [hydra overrides...]`: the same code `mlflow run . -e <step>` runs."""

from __future__ import annotations

import logging
import os
import sys

from omegaconf import OmegaConf

from nextday.steps import catalog

USAGE = f"""usage: python -m nextday <step> [key=value ...]

{catalog.usage()}

examples:
  python -m nextday prepare experiment=quick
  python -m nextday prepare data=csv data.path='prices/*.csv' store=postgres
  python -m nextday forecast data=csv data.path='prices/*.csv' store=postgres
"""


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
    if step not in catalog.BY_NAME:
        known = ", ".join(catalog.BY_NAME)
        print(f"unknown step {step!r}: expected one of {known} or show\n", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    from nextday.daily import ForecastRefused

    try:
        chosen = catalog.BY_NAME[step]
        if chosen.takes_overrides:
            chosen.load()(cfg, overrides)
        else:
            chosen.load()(cfg)
    except ForecastRefused as refusal:  # a guard of the daily run: nothing was written
        print(f"nextday {step}: {refusal}", file=sys.stderr)
        return 2
    return 0

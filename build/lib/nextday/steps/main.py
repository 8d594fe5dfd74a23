"""`main`: the whole chain, each step as its own (child) MLflow run, linked to its inputs.

Prepare, then for both models (normal, then earnings): train, calibrate, export (register,
promote if the gate passes) and backtest the exported version. A model the data cannot train
(the earnings model on price-only data) is skipped with its reason, in the log and in the
main run's tags `nextday.skipped` and `nextday.skipped.<model>`.

A step already run with the same inputs, config and code is reused, not redone (as MLflow's
multistep example does): each step's run carries a `nextday.reuse_key`, the hash of the step,
its model, the config groups it reads, the run ids it consumes and the package's source; a
FINISHED run with the key is taken as it is. `reuse=false` runs everything again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from nextday.config import compose
from nextday.models.data import SEGMENTS, DataRequirementError, check_segments
from nextday.models.spec import model_spec
from nextday.tracking import step_run

log = logging.getLogger(__name__)

MODELS = ("normal", "earnings")
REUSE_TAG = "nextday.reuse_key"
# on the main run: why a model was not trained (price-only data has no earnings samples)
SKIPPED_TAG = "nextday.skipped."
# the config groups each step reads (model steps: the model's spec reads model, arch and
# train, and its judging reads evaluation); upstream changes reach a step through the input
# run ids
MODEL_SPEC = ("model", "arch", "train", "evaluation")
STEP_CONFIG = {
    "prepare": ("data", "quality", "features", "split", "store"),
    "train": MODEL_SPEC,
    "calibrate": (*MODEL_SPEC, "calibrate"),
    "export": (*MODEL_SPEC, "export", "monitor", "data"),
    "backtest": (*MODEL_SPEC, "backtest", "features", "split", "store"),
}


def code_fingerprint() -> str:
    """A hash of the package's source files: a changed line means a step is run again."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def reuse_key(step: str, cfg: DictConfig, inputs: dict[str, str], code: str) -> str:
    settings = {
        group: OmegaConf.to_container(cfg[group], resolve=True) for group in STEP_CONFIG[step]
    }
    payload = {"step": step, "config": settings, "inputs": inputs, "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Chain:
    """Runs steps under the parent run, or finds the run that already did the same work."""

    def __init__(self, parent, reuse: bool, store_has_data: Callable[[], bool]):
        self.client = mlflow.MlflowClient()
        self.experiment_id = parent.info.experiment_id
        self.reuse = reuse
        self.store_has_data = store_has_data
        self.code = code_fingerprint()
        self.reused: dict[str, str] = {}

    def step(
        self,
        name: str,
        label: str,
        run: Callable[[DictConfig], str],
        cfg: DictConfig,
        inputs: dict[str, str],
    ) -> str:
        key = reuse_key(name, cfg, inputs, self.code)
        found = self._finished(key) if self.reuse else None
        if found is not None and (name != "prepare" or self.store_has_data()):
            log.info("main: %s reused: run %s had the same inputs, config and code", label, found)
            self.reused[label] = found
            return found
        run_id = run(cfg)
        self.client.set_tag(run_id, REUSE_TAG, key)
        return run_id

    def _finished(self, key: str) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{REUSE_TAG}` = '{key}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None


def _cannot_train(cfg: DictConfig, prepare_run_id: str) -> str | None:
    """Why the model of `cfg` cannot be trained on the prepared data (None: it can), from the
    row counts the prepare run logged: the same check train makes, before any work."""
    logged = mlflow.MlflowClient().get_run(prepare_run_id).data.metrics
    counts = {}
    for segment in SEGMENTS:
        rows = int(logged.get(f"{segment}_rows", 0))
        earnings = int(logged.get(f"{segment}_earnings_rows", 0))
        counts[segment] = {"all": rows, "earnings": earnings, "normal": rows - earnings}
    try:
        check_segments(model_spec(cfg), counts, int(cfg.model.min_segment_rows))
    except DataRequirementError as error:
        return str(error)
    return None


def run_main(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, str]:
    """Run (or reuse) every step in order under one parent run; return the step -> run id
    map.

    `overrides` are the user's Hydra overrides; each model's steps compose them with
    `model=<name>` (the user's `model.*` keys still apply to both models).
    """
    from nextday.steps.backtest import run_backtest
    from nextday.steps.calibrate import run_calibrate
    from nextday.steps.export import run_export
    from nextday.steps.prepare import open_store, run_prepare
    from nextday.steps.train import run_train

    overrides = [o for o in (overrides or []) if not o.startswith("model=")]
    with step_run(cfg, "main") as parent:
        chain = Chain(parent, bool(cfg.reuse), lambda: open_store(cfg).count("ohlcv") > 0)
        runs = {"prepare": chain.step("prepare", "prepare", run_prepare, cfg, {})}
        # each model step: its run function and the override that names its input run
        # (backtest judges the version just exported, promoted or not)
        chained = (
            ("train", run_train, "prepare", "inputs.prepare_run_id={}"),
            ("calibrate", run_calibrate, "train", "inputs.model_run_id={}"),
            ("export", run_export, "calibrate", "inputs.calibrate_run_id={}"),
            ("backtest", run_backtest, "export", "backtest.model=runs:/{}/model"),
        )
        skipped: dict[str, str] = {}
        for model in MODELS:
            reason = _cannot_train(compose([*overrides, f"model={model}"]), runs["prepare"])
            if reason:
                skipped[model] = reason
                log.warning("main: model=%s skipped: %s", model, reason)
                mlflow.set_tag(f"{SKIPPED_TAG}{model}", reason[:5000])
                continue
            for step, run, upstream, input_override in chained:
                source = runs[upstream if upstream == "prepare" else f"{upstream}.{model}"]
                runs[f"{step}.{model}"] = chain.step(
                    step,
                    f"{step}.{model}",
                    run,
                    compose([*overrides, f"model={model}", input_override.format(source)]),
                    {upstream: source},
                )
        if len(skipped) == len(MODELS):
            raise DataRequirementError(
                "no model can be trained on this data: "
                + "; ".join(f"{m}: {why}" for m, why in skipped.items())
            )
        mlflow.set_tags({f"nextday.run.{step}": run_id for step, run_id in runs.items()})
        mlflow.set_tag("nextday.skipped", ", ".join(skipped) if skipped else "none")
        mlflow.set_tag("nextday.reused", ", ".join(chain.reused) if chain.reused else "none")
        done = [label for label in runs if label not in chain.reused]
        log.info(
            "main: ran %s; reused %s (parent run %s)",
            ", ".join(done) or "nothing",
            ", ".join(chain.reused) or "nothing",
            parent.info.run_id,
        )
        return runs

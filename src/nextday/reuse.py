"""Reuse in `main`: a step already run with the same inputs, config and code is taken as it
is, not redone (as MLflow's multistep example does).

Each step runs on a config that records the groups it reads (nextday.config_reads), however
deep in the domain code the read happens. Its run is tagged with `nextday.reuse_key` (the hash
of the step, its model, the run ids it consumes and the package's source), the groups it read
and a hash of their values. A FINISHED run with the same key whose groups hold the same values
in the current config is reused: a refit backtest, which reads `calibrate`, runs again when a
calibrate setting changes; a fixed one, which does not read it, is kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow.entities import Run
from omegaconf import DictConfig

from nextday.config_reads import config_hash, groups_read, recording
from nextday.contracts import tags

log = logging.getLogger(__name__)

# runs with the same reuse key looked at for one whose config matches (newest first)
CANDIDATES = 100


def code_fingerprint() -> str:
    """A hash of the package's source files: a changed line means a step is run again."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def reuse_key(step: str, label: str, inputs: dict[str, str], code: str) -> str:
    """What a step's run must share with an earlier one to be reused, its config aside: the
    step, its label (the step and its model), the input run ids and the code."""
    payload = {"step": step, "label": label, "inputs": inputs, "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class Chain:
    """Runs steps under the parent run, or finds the run that already did the same work."""

    def __init__(self, parent: Run, reuse: bool, store_has_data: Callable[[], bool]):
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
        """The run of step `name` (`label`: with its model) on `cfg` and `inputs`: one that
        did the same work already, else a new one, tagged with what it read."""
        found = self.reusable(name, label, cfg, inputs)
        if found is not None:
            log.info("main: %s reused: run %s had the same inputs, config and code", label, found)
            self.reused[label] = found
            return found
        recorded = recording(cfg)
        run_id = run(recorded)
        groups = groups_read(recorded)
        self.client.set_tag(run_id, tags.REUSE_KEY, reuse_key(name, label, inputs, self.code))
        self.client.set_tag(run_id, tags.CONFIG_READ, ",".join(groups))
        self.client.set_tag(run_id, tags.CONFIG_HASH, config_hash(cfg, groups))
        return run_id

    def reusable(
        self, name: str, label: str, cfg: DictConfig, inputs: dict[str, str]
    ) -> str | None:
        """The newest FINISHED run with the same step, model, inputs and code whose config
        agrees with `cfg` on every group it read; None when there is none or reuse is off
        (or, for prepare, when the store it filled is empty)."""
        if not self.reuse:
            return None
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{tags.REUSE_KEY}` = '{reuse_key(name, label, inputs, self.code)}' "
            "and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=CANDIDATES,
        )
        found = next((run.info.run_id for run in runs if _agrees(run, cfg)), None)
        if found is not None and name == "prepare" and not self.store_has_data():
            return None
        return found


def _agrees(run: Run, cfg: DictConfig) -> bool:
    """Whether `cfg` holds the values `run` read, on every group it read."""
    read = run.data.tags.get(tags.CONFIG_READ)
    if read is None:
        return False
    groups = [group for group in read.split(",") if group]
    return run.data.tags.get(tags.CONFIG_HASH) == config_hash(cfg, groups)

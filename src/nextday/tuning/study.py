"""Open (or join) an Optuna study: storage with heartbeats, a seeded TPE sampler, a pruner."""

from __future__ import annotations

import hashlib
import logging
import random
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy as sa
from omegaconf import DictConfig

from nextday.config_schema import CHOICES
from nextday.data.store import resolve_url

log = logging.getLogger(__name__)

PRUNERS = CHOICES["tune.pruner.kind"]


def storage_url(cfg: DictConfig) -> str:
    """tune.storage, or a SQLite file under paths.root; passwords only from the environment."""
    url = cfg.tune.get("storage")
    if not url:
        path = Path(str(cfg.paths.root)) / "optuna.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return resolve_url(str(url), cfg.store.get("password_env")).render_as_string(
        hide_password=False
    )


def masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def make_pruner(cfg: DictConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    kind = str(cfg.tune.pruner.kind)
    if kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(cfg.tune.pruner.n_startup_trials),
            n_warmup_steps=int(cfg.tune.pruner.n_warmup_steps),
        )
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"tune.pruner.kind={kind!r}: expected one of {PRUNERS}")


def _storage(cfg: DictConfig, url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """The RDB storage; workers that start together on a fresh database race to create its
    tables, and the loser retries once the winner is done."""

    def make() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=int(cfg.tune.heartbeat.interval),
                grace_period=int(cfg.tune.heartbeat.grace_period),
                engine_kwargs={"pool_pre_ping": True},
            )

    for _ in range(attempts - 1):
        try:
            return make()
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
            time.sleep(0.5 + random.random())
    return make()


def open_study(cfg: DictConfig, url: str, max_epochs: int, worker: str = "") -> optuna.Study:
    """Create the study or load it if it exists: a second worker, or a restarted one, joins.

    Heartbeats let a worker that is killed mid-trial leave no trial RUNNING forever: the next
    worker to start a trial marks it FAIL. The sampler's seed is offset by the trials already
    in the study and, on a shared storage, by `worker` (e.g. the worker's run id), so workers
    that start together do not replay each other's random draws. A lone worker on the local
    default storage stays repeatable.
    """
    storage = _storage(cfg, url)
    study = optuna.create_study(
        study_name=str(cfg.tune.study_name),
        storage=storage,
        direction=str(cfg.tune.direction),
        pruner=make_pruner(cfg, max_epochs),
        load_if_exists=True,
    )
    already = len(study.trials)
    shared = bool(cfg.tune.get("storage"))
    offset = int(hashlib.sha256(worker.encode()).hexdigest()[:6], 16) if shared and worker else 0
    study.sampler = optuna.samplers.TPESampler(
        seed=int(cfg.tune.sampler.seed) + already + offset,
        n_startup_trials=int(cfg.tune.sampler.n_startup_trials),
    )
    log.info("tune: study %r at %s holds %d trials", study.study_name, masked(url), already)
    return study

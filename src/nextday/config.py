"""Compose the Hydra config from conf/ and turn it into what MLflow logs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import cast

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from nextday.inference.outputs import INTERVALS, SERVED_LEVELS

# The configs travel with the package: nextday/conf, in the source tree a link to the
# project's conf/ (resolved here, so CONF_DIR is that folder), in a wheel a plain folder.
# NEXTDAY_CONF points at another folder of the same groups.
CONF_DIR = (Path(__file__).parent / "conf").resolve()
CONF_ENV = "NEXTDAY_CONF"


def conf_dir() -> Path:
    """The config folder in use: NEXTDAY_CONF when set, else the package's own."""
    chosen = os.environ.get(CONF_ENV)
    return Path(chosen).expanduser().resolve() if chosen else CONF_DIR


class RefusedConfigError(ValueError):
    """A composed config that cannot be run: refused before any run starts."""


class SecretInConfigError(RefusedConfigError):
    """A config value carries a password: refused before any run starts or param is logged."""


class UnservedLevelError(RefusedConfigError):
    """An interval level the served answer does not hold."""


# the settings that name an interval level: each must be one the served answer holds
LEVEL_KEYS = ("backtest.level", "calibrate.level")


# scheme://user:password@host: a URL whose user-info part holds a password
_PASSWORD_IN_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:[^/@\s]+@")


def refuse_secrets(cfg: DictConfig) -> None:
    """Refuse a config whose URLs (store, tune storage, tracking, ...) carry a password: it
    would reach MLflow's params and config.yaml. Passwords come from the environment."""
    found = [key for key, value in flatten(cfg).items() if _PASSWORD_IN_URL.match(value)]
    if found:
        raise SecretInConfigError(
            f"{', '.join(found)} carr{'ies' if len(found) == 1 else 'y'} a password in the URL: "
            "remove it and give it in the environment instead (NEXTDAY_PG_PASSWORD or "
            "PGPASSWORD for PostgreSQL stores and studies, MLFLOW_TRACKING_PASSWORD for a "
            "tracking server); nothing was run or logged"
        )


def refuse_unserved_levels(cfg: DictConfig) -> None:
    """Refuse an interval level (backtest.level, calibrate.level) that the served answer does
    not hold: the step would judge columns that no exported model writes."""
    served = " and ".join(
        f"the {level:g} interval ({lower}-{upper})" for level, (lower, upper) in INTERVALS.items()
    )
    for key in LEVEL_KEYS:
        level = OmegaConf.select(cfg, key)
        if level is not None and float(level) not in SERVED_LEVELS:
            raise UnservedLevelError(
                f"{key}={level} is not served: the served answer holds {served}; "
                f"use one of {SERVED_LEVELS}"
            )


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """The composed config for `overrides`, with paths made absolute; a URL with a password
    in it, or an interval level that is not served, is refused here, before anything runs."""
    folder = conf_dir()
    if not (folder / f"{config_name}.yaml").is_file():
        raise FileNotFoundError(
            f"config folder not found: no {config_name}.yaml in {folder}"
            + (f" ({CONF_ENV} points there)" if os.environ.get(CONF_ENV) else "")
        )
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    root = Path(str(cfg.paths.root)).expanduser().resolve()
    OmegaConf.update(cfg, "paths.root", str(root))
    OmegaConf.resolve(cfg)
    refuse_secrets(cfg)
    refuse_unserved_levels(cfg)
    return cfg


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, str]:
    """Dotted keys to values, for MLflow params (lists kept as their string form)."""
    # a DictConfig's container is a dict (to_container is typed for any config node)
    node = (
        cast(dict, OmegaConf.to_container(cfg, resolve=True))
        if isinstance(cfg, DictConfig)
        else cfg
    )
    flat: dict[str, str] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat

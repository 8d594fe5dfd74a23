"""Compose the Hydra config from conf/ and turn it into what MLflow logs."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import cast

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from nextday.config_schema import schema_errors, unknown_key_message
from nextday.contracts.outputs import INTERVALS, SERVED_LEVELS

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


class ConfigSchemaError(RefusedConfigError):
    """A key no group declares, a value not of its key's type, or a number out of range
    (config_schema.py)."""


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
    """The composed config for `overrides`, with paths made absolute. Refused here, before
    anything runs: a key no group declares, a value not of its key's type or out of range
    (config_schema.py), a URL with a password in it, an interval level that is not served."""
    folder = conf_dir()
    if not (folder / f"{config_name}.yaml").is_file():
        raise FileNotFoundError(
            f"config folder not found: no {config_name}.yaml in {folder}"
            + (f" ({CONF_ENV} points there)" if os.environ.get(CONF_ENV) else "")
        )
    overrides = list(overrides or [])
    choices = [o for o in overrides if _is_group_choice(o, folder)]
    try:
        cfg = _hydra_compose(folder, config_name, overrides)
    except HydraException as error:
        unknown = re.search(r"Could not override '([^']+)'", str(error))
        if unknown and "not in struct" in str(error.__cause__ or error):
            known = _defaults(str(folder), config_name, tuple(choices))
            raise ConfigSchemaError(unknown_key_message(unknown.group(1), known)) from None
        raise RefusedConfigError(f"{_hydra_message(error)}; nothing was run") from None
    root = Path(str(cfg.paths.root)).expanduser().resolve()
    OmegaConf.update(cfg, "paths.root", str(root))
    OmegaConf.resolve(cfg)
    # the defaults of the same group choices type each key; composed only when a key is set
    typed_by = (
        _defaults(str(folder), config_name, tuple(choices))
        if len(choices) < len(overrides)
        else None
    )
    problems = schema_errors(_resolved(cfg), typed_by)
    if problems:
        raise ConfigSchemaError("; ".join(problems) + "; nothing was run")
    refuse_secrets(cfg)
    refuse_unserved_levels(cfg)
    return cfg


def _hydra_compose(folder: Path, config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


@functools.lru_cache(maxsize=32)
def _defaults(folder: str, config_name: str, choices: tuple[str, ...]) -> dict:
    """The resolved defaults of these group choices, once a process: they type the keys
    (only their types are read, and the files do not change under a running process)."""
    return _resolved(_hydra_compose(Path(folder), config_name, list(choices)))


def _hydra_message(error: HydraException) -> str:
    """Hydra's message on one line, without its config search path: `In 'config': Could not
    find 'model/foo'; available options in 'model': earnings, normal`."""
    text = str(error).split("Config search path:")[0].strip() or repr(error)
    head, _, options = text.partition("\n\nAvailable options in ")
    if options:
        group, _, names = options.partition(":")
        head += f"; available options in {group}: {', '.join(names.split())}"
    return " ".join(head.split())


def _resolved(cfg: DictConfig) -> dict:
    # a DictConfig's container is a dict (to_container is typed for any config node)
    return cast(dict, OmegaConf.to_container(cfg, resolve=True))


def _is_group_choice(override: str, folder: Path) -> bool:
    """`model=earnings`, `data=csv`, `experiment=quick`: an override that picks a group's
    option (a folder of the config) rather than setting a key."""
    key = override.split("=", 1)[0].lstrip("+~")
    return "." not in key and (folder / key).is_dir()


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, str]:
    """Dotted keys to values, for MLflow params (lists kept as their string form)."""
    node = _resolved(cfg) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, str] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat

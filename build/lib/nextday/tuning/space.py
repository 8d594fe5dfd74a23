"""The search space is data (conf/tune/*.yaml): each entry is a config key or group to vary."""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from nextday.config import compose

# config groups a trial may switch (the value picks a file of the group)
GROUPS = ("arch",)


def suggest(trial: optuna.Trial, space: DictConfig | dict) -> dict[str, Any]:
    """Draw one value per space entry: `choices` -> categorical, `low`/`high` -> float
    (`log: true` for a log scale, `int: true` for integers)."""
    params: dict[str, Any] = {}
    for key, rule in dict(space).items():
        rule = dict(rule)
        if "choices" in rule:
            params[key] = trial.suggest_categorical(key, list(rule["choices"]))
        elif rule.get("int"):
            params[key] = trial.suggest_int(
                key, int(rule["low"]), int(rule["high"]), log=bool(rule.get("log"))
            )
        elif "low" in rule and "high" in rule:
            params[key] = trial.suggest_float(
                key, float(rule["low"]), float(rule["high"]), log=bool(rule.get("log"))
            )
        else:
            raise ValueError(f"tune.space.{key} needs `choices` or `low` and `high`, got {rule}")
    return params


def check_space(space: DictConfig | dict, cfg: DictConfig) -> None:
    """Every key of the space must name a config group or an existing key of the config."""
    unknown = []
    for key in dict(space):
        if key in GROUPS:
            continue
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            unknown.append(key)
    if unknown:
        raise ValueError(f"tune.space names keys the config does not have: {unknown}")


def trial_config(
    overrides: list[str], params: dict[str, Any], max_epochs: int | None
) -> DictConfig:
    """The run's config with a trial's values: groups by composition, keys by update."""
    groups = [f"{key}={value}" for key, value in params.items() if key in GROUPS]
    cfg = compose([*overrides, *groups])
    for key, value in params.items():
        if key not in GROUPS:
            OmegaConf.update(cfg, key, value, merge=False)
    if max_epochs:
        OmegaConf.update(cfg, "model.max_epochs", int(max_epochs))
    return cfg

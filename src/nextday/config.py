"""Compose the Hydra config from conf/ and turn it into what MLflow logs."""

from __future__ import annotations

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

# conf/ sits at the project root, two levels above this package (src/nextday)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """The composed config for `overrides`, with paths made absolute."""
    if not CONF_DIR.is_dir():
        raise FileNotFoundError(f"config folder not found: {CONF_DIR}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    root = Path(str(cfg.paths.root)).expanduser().resolve()
    OmegaConf.update(cfg, "paths.root", str(root))
    OmegaConf.resolve(cfg)
    return cfg


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, str]:
    """Dotted keys to values, for MLflow params (lists kept as their string form)."""
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, str] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat

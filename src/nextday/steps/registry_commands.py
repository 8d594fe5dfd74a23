"""`versions`, `promote`, `rollback` and `download`: the registry by hand.

python -m nextday versions                           # every version of both models
python -m nextday promote model=normal version=3
python -m nextday rollback model=normal              # back to the previous production
python -m nextday download model=normal alias=production
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pandas as pd
from omegaconf import DictConfig

from nextday.export import registry
from nextday.models.spec import model_spec
from nextday.tracking import configure

log = logging.getLogger(__name__)


def _registered(cfg: DictConfig) -> str:
    return registry.registered_name(str(cfg.export.registered_model_prefix), model_spec(cfg).name)


def run_promote(cfg: DictConfig) -> str:
    configure(cfg)
    if cfg.version is None:
        raise ValueError("promote needs version=N (the registered version to serve)")
    name = _registered(cfg)
    registry.promote(mlflow.MlflowClient(), name, str(cfg.version), "promoted by hand")
    return str(cfg.version)


def run_rollback(cfg: DictConfig) -> str:
    configure(cfg)
    name = _registered(cfg)
    restored = registry.rollback(mlflow.MlflowClient(), name, cfg.version)
    return str(restored.version)


def run_download(cfg: DictConfig) -> Path:
    """The version into `<paths.root>/models/<model>/<version>/`, checksums verified."""
    configure(cfg)
    name = _registered(cfg)
    client = mlflow.MlflowClient()
    alias = None if cfg.version is not None else (cfg.alias or registry.PRODUCTION)
    version = registry.resolve(client, name, cfg.version, alias)
    target = Path(str(cfg.paths.root)) / "models" / model_spec(cfg).name / str(version.version)
    path = registry.download(name, version, target)
    log.info("download: %s version %s -> %s (checksums verified)", name, version.version, path)
    print(path)
    return path


def run_versions(cfg: DictConfig) -> pd.DataFrame:
    """Print every version of the registered models: aliases, stage, the test MAE beside the
    zero predictor's, the calibration it serves and the gate's decision."""
    configure(cfg)
    prefix = str(cfg.export.registered_model_prefix)
    level = float(cfg.evaluation.significance)
    table = registry.versions_table(mlflow.MlflowClient(), prefix, level)
    if table.empty:
        print(f"no registered model named {prefix}*: run `python -m nextday main` first")
    else:
        with pd.option_context("display.max_colwidth", 90, "display.width", 200):
            print(table.to_string(index=False))
    print(_daily_line(cfg))
    return table


def _daily_line(cfg: DictConfig) -> str:
    """The daily run's last forecast on the configured store, and the versions behind it."""
    import sqlalchemy as sa

    from nextday.data.store import Store

    store = Store(str(cfg.store.url), password_env=cfg.store.get("password_env"), timeout_s=10)
    try:
        runs = store.read("forecast_runs")
        forecasts = store.read("forecasts", "as_of = (SELECT MAX(as_of) FROM forecasts)")
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError):  # no store, or one made before it
        return "daily forecast: none on this store yet (`python -m nextday forecast`)"
    if runs.empty or forecasts.empty:
        return "daily forecast: none on this store yet (`python -m nextday forecast`)"
    as_of = pd.Timestamp(forecasts["as_of"].max()).date()
    target = pd.Timestamp(forecasts["target_date"].max()).date()
    used = forecasts.groupby(["model_name", "model_version"]).size()
    versions = ", ".join(f"{name} v{version} ({n} symbols)" for (name, version), n in used.items())
    return f"daily forecast: last as of the close of {as_of} for {target}, by {versions}"

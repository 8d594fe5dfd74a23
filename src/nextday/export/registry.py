"""The MLflow Model Registry side: versions, the production alias and stage, downloads.

The version in use carries alias `production` and stage `Production`; promoting another
archives it (never deletes it) and remembers it as alias `previous-production`, which is what
a rollback returns to. A version that fails the gate carries alias `challenger`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from nextday.contracts import metrics as metric_names
from nextday.contracts import tags
from nextday.contracts.metadata import ExportMetadata
from nextday.evaluation import claims
from nextday.export.gate import Check
from nextday.inference.model import ChecksumError, find_metadata, verify
from nextday.uncertainty.online import ServedOnline, served_kind

log = logging.getLogger(__name__)

PRODUCTION, CHALLENGER, PREVIOUS = "production", "challenger", "previous-production"
# the metrics a version carries as tags (metric.<name>), for `versions` and the registry UI
TAGGED_METRICS = (
    metric_names.point("val", "mae"),
    *(metric_names.point("test", name) for name in metric_names.POINT_QUANTITIES),
    metric_names.coverage("test", 0.8),
    metric_names.width("test", 0.8),
    metric_names.point("test", "mae", "zero"),
    metric_names.DM_ZERO_MAE_P,
    metric_names.PARITY_MAX_ABS_DIFF,
)

TEST_MAE, ZERO_TEST_MAE = (
    metric_names.point("test", "mae"),
    metric_names.point("test", "mae", "zero"),
)

# `versions`: one row per version ("-" where a version has no such tag)
VERSION_COLUMNS = (
    "model",
    "version",
    "aliases",
    "stage",
    "test_mae",
    "zero_mae",
    "vs_zero",
    "calibration",
    "promoted",
    "gate",
)


def registered_name(prefix: str, model: str) -> str:
    return f"{prefix}{model}"


def version_by_alias(client, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def next_version(client, name: str) -> int:
    """The number the registry will give the next version of `name`."""
    versions = client.search_model_versions(f"name = '{name}'")
    return 1 + max((int(v.version) for v in versions), default=0)


def resolve(client, name: str, version: int | str | None, alias: str | None) -> ModelVersion:
    """A version by number or by alias; a clear error when there is none."""
    if (version is None) == (alias is None):
        raise ValueError("name exactly one of version=N or alias=NAME")
    if alias is not None:
        found = version_by_alias(client, name, str(alias))
        if found is None:
            raise ValueError(f"{name} has no version with alias {alias!r}")
        return found
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as error:
        raise ValueError(f"{name} has no version {version}") from error


def promote(client, name: str, version: str, reason: str) -> ModelVersion | None:
    """Give `version` the production alias and stage; the former production version is
    archived and becomes `previous-production`. Returns that former version, if any."""
    version = str(version)
    client.get_model_version(name, version)  # fails clearly when there is no such version
    previous = version_by_alias(client, name, PRODUCTION)
    client.set_registered_model_alias(name, PRODUCTION, version)
    if previous is not None and str(previous.version) != version:
        client.set_registered_model_alias(name, PREVIOUS, str(previous.version))
    with warnings.catch_warnings():  # stages are deprecated in MLflow 3 but still shown
        warnings.simplefilter("ignore")
        client.transition_model_version_stage(
            name, version, "Production", archive_existing_versions=True
        )
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, version, tags.PROMOTED_AT, now)
    client.set_model_version_tag(name, version, tags.PROMOTION_REASON, reason)
    log.info(
        "%s version %s is now production (%s)%s",
        name,
        version,
        reason,
        f"; version {previous.version} archived"
        if previous and previous.version != version
        else "",
    )
    return previous


def mark_challenger(client, name: str, version: str, reasons: list[str]) -> None:
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    client.set_model_version_tag(name, str(version), tags.GATE, "failed: " + "; ".join(reasons))


def version_tags(metadata: ExportMetadata, checks: Sequence[Check]) -> dict[str, str]:
    """What a registered version says about itself: the model, its data and runs, the
    checksums every cached copy is checked against, headline metrics and the checks."""
    data = metadata.data
    out = {
        tags.MODEL: metadata.model,
        tags.ARCH: metadata.arch,
        tags.FEATURES: ",".join(metadata.features),
        tags.TRAINED_AT: metadata.trained_at,
        tags.GIT_COMMIT: metadata.git_commit,
        tags.DATA: f"{data['symbols']} symbols, {data['first_date']} to {data['last_date']}",
        tags.MC_PASSES: str(metadata.mc["passes"]),
        tags.CALIBRATION: served_kind(ServedOnline.of_version(metadata.online)),
        **{f"{tags.VERSION_RUN}{step}": run for step, run in metadata.runs.items()},
        tags.SHA256: json.dumps(metadata.sha256, sort_keys=True),
    }
    for name in TAGGED_METRICS:
        if name in metadata.metrics:
            out[f"{tags.VERSION_METRIC}{name}"] = f"{metadata.metrics[name]:.6g}"
    for check in checks:
        out[f"{tags.CHECK}{check.name}"] = ("pass: " if check.passed else "fail: ") + check.detail
    return out


def register(
    client, model_uri: str, metadata: ExportMetadata, checks: Sequence[Check], card: str
) -> str:
    """Register the logged model as a version of `metadata.registered_model`, tagged and
    described by its card; returns the version the registry gave (warned about when it is
    not the one the files are named after: another export registered in between)."""
    name = metadata.registered_model
    version = mlflow.register_model(model_uri, name, tags=version_tags(metadata, checks)).version
    if int(version) != metadata.version:
        log.warning(
            "export: files are named v%d but the registry gave version %s",
            metadata.version,
            version,
        )
    client.update_model_version(name, version, description=card)
    return str(version)


def versions_table(client, prefix: str, significance: float) -> pd.DataFrame:
    """Every version of the registered models named `prefix`*: aliases, stage, the test MAE
    beside the zero predictor's (and whether it beats it at `significance`), the calibration
    it serves, why it was promoted and the gate's decision; sorted by model and version."""
    rows = []
    for model in client.search_registered_models(f"name LIKE '{prefix}%'"):
        for found in client.search_model_versions(f"name = '{model.name}'"):
            # the search leaves aliases out: fetch each version whole
            version = client.get_model_version(model.name, found.version)
            recorded = version.tags
            rows.append(
                {
                    "model": model.name,
                    "version": int(version.version),
                    "aliases": ",".join(version.aliases) or "-",
                    "stage": "-"
                    if version.current_stage in (None, "None")
                    else version.current_stage,
                    "test_mae": recorded.get(f"{tags.VERSION_METRIC}{TEST_MAE}", "-"),
                    "zero_mae": recorded.get(f"{tags.VERSION_METRIC}{ZERO_TEST_MAE}", "-"),
                    "vs_zero": _versus_zero(recorded, significance),
                    "calibration": recorded.get(tags.CALIBRATION, "-"),
                    "promoted": recorded.get(tags.PROMOTION_REASON, "-"),
                    "gate": recorded.get(tags.GATE, "-"),
                }
            )
    return pd.DataFrame(rows, columns=VERSION_COLUMNS).sort_values(["model", "version"])


def _versus_zero(recorded: dict[str, str], level: float) -> str:
    """A version's test comparison with the zero predictor, as far as its DM test allows."""
    raw = recorded.get(f"{tags.VERSION_METRIC}{metric_names.DM_ZERO_MAE_P}")
    p = float(raw) if raw not in (None, "") else None
    verdict = claims.outcome(p, level)
    return verdict if p is None else f"{verdict} (p={p:.3g})"


def rollback(client, name: str, version: int | str | None = None) -> ModelVersion:
    """Production back to `version`, or to the version production replaced last."""
    current = version_by_alias(client, name, PRODUCTION)
    if version is None:
        target = version_by_alias(client, name, PREVIOUS)
        if target is None:
            raise ValueError(f"{name} has no previous production version to roll back to")
        version = str(target.version)
    if current is not None and str(current.version) == str(version):
        raise ValueError(f"{name} version {version} is already production")
    promote(
        client,
        name,
        str(version),
        f"rollback from version {current.version}" if current else "rollback",
    )
    return client.get_model_version(name, str(version))


def download(name: str, version: ModelVersion, target: Path) -> Path:
    """The version's export folder into `target`, every file checked against metadata.json.

    Files land in a staging folder first; `target` is replaced only when all of them match,
    so a bad download never overwrites a good copy."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version.version}", dst_path=str(staging)
        )
        metadata_path = find_metadata(staging)
        metadata = ExportMetadata.from_json(metadata_path)
        try:
            verify(metadata_path.parent, metadata.sha256)
        except ChecksumError as error:
            raise ChecksumError(f"{name} version {version.version}: {error}") from error
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(metadata_path.parent), str(target))
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)

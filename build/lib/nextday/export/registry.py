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
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from nextday.inference.model import ChecksumError, find_metadata, verify

log = logging.getLogger(__name__)

PRODUCTION, CHALLENGER, PREVIOUS = "production", "challenger", "previous-production"
GATE_TAG = "nextday.gate"


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
    client.set_model_version_tag(name, version, "nextday.promoted_at", now)
    client.set_model_version_tag(name, version, "nextday.promotion_reason", reason)
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
    client.set_model_version_tag(name, str(version), GATE_TAG, "failed: " + "; ".join(reasons))


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
        metadata = json.loads(metadata_path.read_text())
        try:
            verify(metadata_path.parent, metadata)
        except ChecksumError as error:
            raise ChecksumError(f"{name} version {version.version}: {error}") from error
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(metadata_path.parent), str(target))
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""Artifacts on S3 end to end: a real `mlflow server` proxies artifacts into a moto S3 bucket,
the quick pipeline and an export run against it, and the registered model comes back out.

Nothing of MLflow is mocked: scripts/team_stack.py starts PostgreSQL (the server's backend
store), moto's S3 server and the MLflow tracking server on free loopback ports, the pipeline
steps run as `python -m nextday ...` subprocesses (which keeps TensorFlow out of this process),
and the checks read the bucket with boto3 and load the model through the registry, the
downloaded folder and MLflow's pyfunc.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import team_stack
from conftest import stack_folder
from nextday.inference.model import _session

pytestmark = [pytest.mark.postgres, pytest.mark.slow(seconds=75)]

BUCKET = team_stack.BUCKET
PREFIX = team_stack.PREFIX
REGISTERED = "nextday-normal"
OUTPUTS = ["prediction", "sigma", "p10", "p50", "p90", "out_of_range"]
ROWS = 8


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = team_stack.clean_env({})
    env.pop("NEXTDAY_ROOT", None)
    env.update(extra)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _nextday(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "nextday", *args],
        env=env,
        cwd=env["NEXTDAY_ROOT"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"`nextday {' '.join(args)}` exited with {result.returncode}:\n{result.stderr[-5000:]}"
    )
    return result


@pytest.fixture(scope="module")
def deployed():
    """The team stack (mlflow server with artifacts proxied to s3://BUCKET/PREFIX), the quick
    pipeline of the normal model and its export run into it, and the production version
    downloaded."""
    with stack_folder("nextday-s3-") as folder, team_stack.running(folder) as stack:
        aws = team_stack.aws_env(stack.path, stack.s3_endpoint)
        root = folder / "root"
        root.mkdir()
        env = _child_env(
            {**aws, "MLFLOW_TRACKING_URI": stack.tracking_uri, "NEXTDAY_ROOT": str(root)}
        )
        # The steps one by one for the normal model: `main` would also train and calibrate
        # the earnings model, which this test does not need and which would double its
        # runtime.
        for step in ("prepare", "train", "calibrate"):
            _nextday(env, step, "experiment=quick", "model=normal")
        # a relaxed gate, so that the version becomes production on this tiny market
        _nextday(env, "export", "experiment=quick", "model=normal", "export.gate.significance=1.0")
        _nextday(env, "download", "experiment=quick", "model=normal", "alias=production")
        yield {
            "folder": folder,
            "root": root,
            "tracking": stack.tracking_uri,
            "aws": aws,
            "s3": team_stack.s3_client(stack),
        }


@pytest.fixture
def client(deployed, tmp_path, monkeypatch):
    """This process pointed at the server (and S3), undone after the test."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    for name in (
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_REGISTRY_URI",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", deployed["tracking"])
    for key, value in deployed["aws"].items():
        monkeypatch.setenv(key, value)
    # a URI set earlier in this process (mlflow.set_tracking_uri) would win over the env var
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    # ModelInference caches downloads: keep them in this test's folder
    monkeypatch.setenv("NEXTDAY_MODEL_CACHE", str(tmp_path / "models"))
    assert mlflow.get_tracking_uri() == deployed["tracking"]
    # The MC graph draws its dropout masks from a seeded generator per ONNX Runtime session,
    # and ModelInference caches sessions per file: only fresh sessions draw the same masks, so
    # every comparison below starts from an empty cache.
    _session.cache_clear()
    yield mlflow.MlflowClient()
    _session.cache_clear()


def _production(client):
    return client.get_model_version_by_alias(REGISTERED, "production")


def _downloaded(deployed, version) -> Path:
    folder = deployed["root"] / "models" / "normal" / str(version.version)
    assert (folder / "metadata.json").exists(), list(deployed["root"].rglob("*"))
    return folder


def _bucket_keys(s3) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _rows(deployed, metadata) -> pd.DataFrame:
    """A few test rows of the prepared dataset (itself fetched through the S3 proxy)."""
    from nextday.contracts.artifacts import DATASET

    path = mlflow.artifacts.download_artifacts(
        run_id=metadata.runs["prepare"],
        artifact_path=DATASET.path,
        dst_path=str(deployed["folder"] / "dataset"),
    )
    dataset = pd.read_parquet(path)
    features = list(metadata.input_columns)
    rows = dataset.loc[dataset["split"] == "test", features].dropna().head(ROWS)
    assert len(rows) == ROWS
    return rows.astype(np.float64).reset_index(drop=True)


def test_export_files_are_in_the_bucket(deployed, client):
    version = _production(client)
    metadata = json.loads((_downloaded(deployed, version) / "metadata.json").read_text())
    keys = _bucket_keys(deployed["s3"])
    # the version's model artifacts live under the proxied destination in the bucket
    # MLflow 3 logs a model as a LoggedModel: the version's source is models:/<model id>
    model_id = version.model_id or version.source.removeprefix("models:/")
    assert model_id.startswith("m-"), version.source
    model_keys = [k for k in keys if f"/models/{model_id}/" in k]
    assert model_keys, f"no object of model {model_id} in s3://{BUCKET}/{PREFIX}: {keys}"
    by_name = {}
    for key in model_keys:
        by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    expected = {*metadata["files"].values(), "metadata.json"}
    missing = expected - set(by_name)
    assert not missing, f"not in the bucket: {sorted(missing)}; there: {sorted(by_name)}"
    # and the bytes in the bucket are the ones the metadata vouches for
    for name, digest in metadata["sha256"].items():
        (key,) = by_name[name]
        body = deployed["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest, key
    # so is the dataset of the prepare run, and the run records it as its input
    prepare = client.get_run(metadata["runs"]["prepare"])
    dataset_key = (
        f"{PREFIX}/{prepare.info.experiment_id}/{prepare.info.run_id}/artifacts/"
        "dataset/dataset.parquet"
    )
    assert dataset_key in keys
    assert [d.dataset.name for d in prepare.inputs.dataset_inputs] == ["nextday-dataset"]
    # nothing went to a local artifact folder instead
    assert not (deployed["root"] / "mlartifacts").exists()
    assert not (deployed["folder"] / "mlartifacts").exists()


def test_registry_model_matches_downloaded_folder(deployed, client):
    from nextday.inference import ModelInference
    from nextday.inference.model import cache_root

    version = _production(client)
    local = ModelInference(_downloaded(deployed, version), device="cpu")
    remote = ModelInference(f"models:/{REGISTERED}@production", device="cpu")
    assert remote.version == local.version == str(version.version)
    assert remote.metadata.sha256 == local.metadata.sha256
    # the registry copy came through the server, not from the downloaded folder
    assert cache_root() in remote.folder.parents
    rows = _rows(deployed, local.metadata)
    expected = local.predict_batch(rows)
    got = remote.predict_batch(rows)
    assert list(got.columns) == OUTPUTS
    numbers = OUTPUTS[:-1]  # and the out_of_range flag
    assert np.isfinite(got[numbers].to_numpy()).all()
    np.testing.assert_allclose(got[numbers], expected[numbers], rtol=1e-6, atol=1e-9)
    assert (got["out_of_range"] == expected["out_of_range"]).all()


def test_pyfunc_loads_from_the_registry(deployed, client):
    from nextday.inference import ModelInference

    version = _production(client)
    local = ModelInference(_downloaded(deployed, version), device="cpu")
    rows = _rows(deployed, local.metadata)
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED}@production")
    predicted = pd.DataFrame(model.predict(rows))
    assert list(predicted.columns) == OUTPUTS
    numbers = OUTPUTS[:-1]
    np.testing.assert_allclose(
        predicted[numbers], local.predict_batch(rows)[numbers], rtol=1e-6, atol=1e-9
    )

"""Artifacts on S3 end to end: a real `mlflow server` proxies artifacts into a moto S3 bucket,
the quick pipeline and an export run against it, and the registered model comes back out.

Nothing of MLflow is mocked: moto's S3 server and the MLflow tracking server run as
subprocesses on free loopback ports, the pipeline steps run as `python -m nextday ...`
subprocesses (which keeps TensorFlow out of this process), and the checks read the bucket with
boto3 and load the model through the registry, the downloaded folder and MLflow's pyfunc.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from nextday.inference.model import _session

BUCKET = "nextday-artifacts"
PREFIX = "mlartifacts"
REGISTERED = "nextday-normal"
OUTPUTS = ["prediction", "sigma", "p10", "p50", "p90"]
ROWS = 8


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _aws_env(folder: Path, endpoint: str) -> dict[str, str]:
    """Dummy credentials for moto; no profile or config file of this machine is read."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "AWS_")) and k != "NEXTDAY_ROOT"
    }
    env.update(extra)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command,
            env=env,
            cwd=log.parent,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers die with it
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


def _wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{_tail(log)}")


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


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
def deployed(tmp_path_factory):
    """moto S3 + mlflow server (artifacts proxied to s3://BUCKET/PREFIX), the quick pipeline of
    the normal model and its export run into it, and the production version downloaded."""
    import boto3

    folder = tmp_path_factory.mktemp("s3-artifacts")
    s3_port, mlflow_port = _free_port(), _free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    tracking = f"http://127.0.0.1:{mlflow_port}"
    aws = _aws_env(folder, endpoint)
    logs = {"moto": folder / "moto.log", "mlflow": folder / "mlflow-server.log"}
    servers: dict[str, subprocess.Popen] = {}
    try:
        # both at once: the MLflow server touches the bucket only when artifacts move
        servers["moto"] = _start(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
            _child_env(aws),
            logs["moto"],
        )
        servers["mlflow"] = _start(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{folder}/mlflow.db",
                "--artifacts-destination",
                f"s3://{BUCKET}/{PREFIX}",
            ],
            _child_env(aws),
            logs["mlflow"],
        )
        _wait_until_up(f"{endpoint}/moto-api/", servers["moto"], logs["moto"])
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=BUCKET)
        _wait_until_up(f"{tracking}/health", servers["mlflow"], logs["mlflow"])

        root = folder / "root"
        root.mkdir()
        env = _child_env({**aws, "MLFLOW_TRACKING_URI": tracking, "NEXTDAY_ROOT": str(root)})
        # The steps one by one for the normal model: `main` would also train and calibrate the
        # earnings model, which this test does not need and which would double its runtime.
        for step in ("prepare", "train", "calibrate"):
            _nextday(env, step, "experiment=quick", "model=normal")
        # a relaxed gate, so that the version becomes production on this tiny market
        _nextday(env, "export", "experiment=quick", "model=normal", "export.gate.significance=1.0")
        _nextday(env, "download", "experiment=quick", "model=normal", "alias=production")
        yield {"folder": folder, "root": root, "tracking": tracking, "aws": aws, "s3": s3}
    finally:
        for process in reversed(servers.values()):
            _stop(process)


@pytest.fixture
def client(deployed, tmp_path, monkeypatch):
    """This process pointed at the server (and S3), undone after the test."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_REGISTRY_URI", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", deployed["tracking"])
    for key, value in deployed["aws"].items():
        monkeypatch.setenv(key, value)
    # a URI set earlier in this process (mlflow.set_tracking_uri) would win over the env var
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    # ModelInference caches downloads under the temp dir: keep them in this test's folder
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
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


def _rows(deployed, metadata: dict) -> pd.DataFrame:
    """A few test rows of the prepared dataset (itself fetched through the S3 proxy)."""
    from nextday.steps.prepare import DATASET_ARTIFACT

    path = mlflow.artifacts.download_artifacts(
        run_id=metadata["runs"]["prepare"],
        artifact_path=DATASET_ARTIFACT,
        dst_path=str(deployed["folder"] / "dataset"),
    )
    dataset = pd.read_parquet(path)
    features = list(metadata["input_columns"])
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

    version = _production(client)
    local = ModelInference(_downloaded(deployed, version), device="cpu")
    remote = ModelInference(f"models:/{REGISTERED}@production", device="cpu")
    assert remote.version == local.version == str(version.version)
    assert remote.metadata["sha256"] == local.metadata["sha256"]
    # the registry copy came through the server, not from the downloaded folder
    assert Path(tempfile.gettempdir()) in remote.folder.parents
    rows = _rows(deployed, local.metadata)
    expected = local.predict_batch(rows)
    got = remote.predict_batch(rows)
    assert list(got.columns) == OUTPUTS
    assert np.isfinite(got.to_numpy()).all()
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-9)


def test_pyfunc_loads_from_the_registry(deployed, client):
    from nextday.inference import ModelInference

    version = _production(client)
    local = ModelInference(_downloaded(deployed, version), device="cpu")
    rows = _rows(deployed, local.metadata)
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED}@production")
    predicted = pd.DataFrame(model.predict(rows))
    assert list(predicted.columns) == OUTPUTS
    np.testing.assert_allclose(
        predicted.to_numpy(), local.predict_batch(rows).to_numpy(), rtol=1e-6, atol=1e-9
    )

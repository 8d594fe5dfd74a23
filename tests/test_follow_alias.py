"""Following the alias (issue 27, item 3): a ModelInference on `models:/<name>@<alias>` and
the served model (`mlflow models serve -m models:/nextday-normal@production`) answer with the
version the alias names after `promote` or `rollback` moves it, without a restart; a version
that takes other features is refused, and a registry that cannot be read leaves the current
version serving."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import sqlalchemy as sa
from mlflow.exceptions import MlflowException

from conftest import quick_root
from nextday.contracts.metadata import ExportMetadata
from nextday.data.store import Store
from nextday.inference import ModelInference
from nextday.inference.pyfunc import EXPORT_ARTIFACT, NextdayOnnxModel
from nextday.steps.calibrate import run_calibrate
from nextday.steps.export import run_export
from nextday.steps.prepare import run_prepare
from nextday.steps.registry_commands import run_promote, run_rollback
from nextday.steps.train import run_train
from nextday.tracking import configure

pytestmark = [pytest.mark.integration, pytest.mark.slow(seconds=150)]

NAME = "nextday-normal"
ALIAS_URI = f"models:/{NAME}@production"
RELAXED = (
    "export.gate.significance=1.0",
    "export.gate.coverage_band=[0.0,1.0]",
    "export.gate.online_score_slack=1.0",
    "export.gate.max_val_mae_increase=1.0",  # v2 is the same network as production v1
)
FOLLOWER = "nextday.inference.model"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One tracking store: v1 and v2 of nextday-normal, exports of one calibrated quick model
    with different MC seeds (so their answers differ), v2 production and v1 previous; and v3,
    a normal model trained on 37 features (technical and earnings), registered but not
    promoted. Yields (root, cfg)."""
    root = tmp_path_factory.mktemp("follow-alias")
    with quick_root(root) as cfg:
        run_prepare(cfg())
        run_train(cfg())
        run_calibrate(cfg())
        run_export(cfg(*RELAXED, "export.seed=11"))
        run_export(cfg(*RELAXED))
        wider = "model.feature_groups=[technical,earnings]"
        run_train(cfg(wider))
        run_calibrate(cfg(wider))
        run_export(cfg(wider, *RELAXED, "export.promote=false"))
        configure(cfg())
        yield root, cfg


@pytest.fixture
def client(registry):
    """The module's registry as MLflow's current one; production back on v2 afterwards."""
    _, cfg = registry
    configure(cfg())
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias(NAME, "production").version == 2
    yield client
    configure(cfg())
    client.set_registered_model_alias(NAME, "production", "2")


class Collector:
    """What a PredictionLogger is to ModelInference: `log(frame)`, here kept in memory."""

    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.lock = threading.Lock()

    def log(self, frame: pd.DataFrame) -> None:
        with self.lock:
            self.frames.append(frame)

    def versions(self) -> list[str]:
        with self.lock:
            return [v for frame in self.frames for v in frame["model_version"].unique()]


def _wait(condition, seconds: float = 20.0, what: str = "the switch") -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.05)


def _rows(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).normal(0.01, 0.005, size=(n, 20))


def _keys(n: int = 8, prefix: str = "S") -> list[tuple[str, str]]:
    return [(f"{prefix}{i:03d}", "2024-03-01") for i in range(n)]


def _first_answer(inference: ModelInference, rows: np.ndarray) -> pd.DataFrame:
    """The answer of a fresh session (MC draws from the graph's seed): the same for two
    instances of one version, different for another seed."""
    inference.restart_draws()
    return inference.predict_batch(rows)


def test_an_instance_follows_promote_and_rollback(registry, client, caplog):
    _, cfg = registry
    caplog.set_level(logging.INFO, logger=FOLLOWER)
    rows = _rows()
    collector = Collector()
    inference = ModelInference(ALIAS_URI, device="cpu", follow_alias_s=0.2, logger=collector)
    v1 = ModelInference(f"models:/{NAME}/1", device="cpu")
    v2 = ModelInference(f"models:/{NAME}/2", device="cpu")
    answers = {"1": _first_answer(v1, rows), "2": _first_answer(v2, rows)}
    assert not np.allclose(answers["1"]["prediction"], answers["2"]["prediction"])
    try:
        assert inference.following == ALIAS_URI
        assert inference.version == "2" and inference.folder == v2.folder
        pd.testing.assert_frame_equal(_first_answer(inference, rows), answers["2"])

        # requests run in a loop while the alias moves: every one is answered, on one version
        errors: list[Exception] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    inference.predict_batch(rows, keys=_keys(len(rows), "H"))
                except BaseException as error:
                    errors.append(error)

        worker = threading.Thread(target=hammer, daemon=True)
        worker.start()
        try:
            run_promote(cfg("model=normal", "version=1"))
            _wait(lambda: inference.version == "1")
            assert inference.metadata.version == 1 and inference.folder == v1.folder
            assert inference.file.name == "mlp_normal_v1.optimized.onnx"
            time.sleep(0.3)
            run_rollback(cfg("model=normal"))  # back to previous-production: v2
            _wait(lambda: inference.version == "2")
            time.sleep(0.3)
        finally:
            stop.set()
            worker.join(timeout=10)
        assert not errors, errors[:3]
        seen = collector.versions()
        assert set(seen) == {"1", "2"}, seen
        # each request's rows name the one version that answered it
        assert all(frame["model_version"].nunique() == 1 for frame in collector.frames)
        changes = [a for a, b in zip(seen, seen[1:], strict=False) if a != b]
        assert changes == ["2", "1"], seen  # 2 -> 1 at the promote, 1 -> 2 at the rollback

        # answers are the serving version's, and so are the logged rows
        run_promote(cfg("model=normal", "version=1"))
        _wait(lambda: inference.version == "1")
        pd.testing.assert_frame_equal(_first_answer(inference, rows), answers["1"])
        before = len(collector.frames)
        inference.predict(
            dict(zip(inference.features, rows[0], strict=True)), key=("AAPL", "2024-03-01")
        )
        inference.predict_batch(rows, keys=_keys())
        logged = pd.concat(collector.frames[before:])
        assert (logged["model_version"] == "1").all() and (logged["model_name"] == NAME).all()
        assert len(logged) == 1 + len(rows)
        switched = [
            r.getMessage() for r in caplog.records if "now serving version" in r.getMessage()
        ]
        assert len(switched) == 3 and "now serving version 1 (was version 2" in switched[0]

        inference.stop_following()
        assert inference.following is None
        client.set_registered_model_alias(NAME, "production", "2")
        time.sleep(0.6)
        assert inference.version == "1"  # no longer following: stays
    finally:
        inference.stop_following()


def test_a_version_with_other_features_is_refused_once(registry, client, caplog):
    caplog.set_level(logging.INFO, logger=FOLLOWER)
    wide = ModelInference(f"models:/{NAME}/3", device="cpu")
    assert len(wide.features) == 37  # the technical 20 and the earnings features
    inference = ModelInference(ALIAS_URI, device="cpu", follow_alias_s=0.2)
    try:
        client.set_registered_model_alias(NAME, "production", "3")

        def refusals() -> list[str]:
            return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]

        _wait(lambda: refusals(), what="the refusal")
        time.sleep(1.0)  # five more checks: still one line
        assert len(refusals()) == 1, refusals()
        line = refusals()[0]
        assert "version 3 refused" in line
        assert str(wide.features) in line and str(inference.features) in line
        assert inference.version == "2"
        assert inference.predict_batch(_rows()).shape == (8, 6)  # the old version answers
        # the alias moves on to a version that fits: followed again
        client.set_registered_model_alias(NAME, "production", "1")
        _wait(lambda: inference.version == "1")
    finally:
        inference.stop_following()


def test_a_registry_that_cannot_be_read_keeps_the_version_serving(
    registry, client, caplog, monkeypatch
):
    caplog.set_level(logging.INFO, logger=FOLLOWER)
    inference = ModelInference(ALIAS_URI, device="cpu", follow_alias_s=0.2)
    try:
        real = mlflow.MlflowClient.get_model_version_by_alias

        def unreachable(self, name, alias):
            raise MlflowException(
                "API request to http://127.0.0.1:9/api/2.0/mlflow/registered-models/alias "
                "failed with exception ConnectionError"
            )

        monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", unreachable)
        client.set_registered_model_alias(NAME, "production", "1")  # not seen while away
        time.sleep(1.2)  # six checks
        assert inference.version == "2"
        assert inference.predict_batch(_rows()).shape == (8, 6)
        away = [r for r in caplog.records if "could not be read" in r.getMessage()]
        assert len(away) == 1 and away[0].levelno == logging.WARNING
        assert "ConnectionError" in away[0].getMessage()
        monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", real)
        _wait(lambda: inference.version == "1")
        back = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
        assert len(back) == 1, back
        assert len([r for r in caplog.records if "could not be read" in r.getMessage()]) == 1
    finally:
        inference.stop_following()


def test_the_served_model_follows_only_the_version_behind_its_alias(
    registry, client, caplog, monkeypatch
):
    """load_context: the version's own folder follows its alias when it is the version behind
    it; otherwise, or with following turned off, it serves that version fixed and says why."""
    from types import SimpleNamespace

    caplog.set_level(logging.INFO)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    for name in ("NEXTDAY_PREDICTION_LOG_URL", "NEXTDAY_CALIBRATION_URL", "NEXTDAY_FOLLOW_ALIAS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEXTDAY_FOLLOW_ALIAS_S", "0.2")

    def served(version: str) -> NextdayOnnxModel:
        folder = ModelInference(f"models:/{NAME}/{version}", device="cpu").folder
        model = NextdayOnnxModel()
        model.load_context(SimpleNamespace(artifacts={EXPORT_ARTIFACT: str(folder)}))
        return model

    # metadata.json carries the export's follow_alias_s (export.serving.follow_alias_s)
    folder = ModelInference(f"models:/{NAME}/2", device="cpu").folder
    assert ExportMetadata.from_json(folder / "metadata.json").serving["follow_alias_s"] == 30
    production = served("2")
    try:
        assert production.inference.following == ALIAS_URI
        client.set_registered_model_alias(NAME, "production", "1")
        _wait(lambda: production.inference.version == "1")
    finally:
        production.inference.stop_following()
    fixed = served("2")  # production is v1 now: v2 is served as itself
    assert fixed.inference.following is None and fixed.inference.version == "2"
    assert "alias names version 1, not this one" in caplog.text
    monkeypatch.setenv("NEXTDAY_FOLLOW_ALIAS", "none")
    assert served("1").inference.following is None
    assert "NEXTDAY_FOLLOW_ALIAS=none" in caplog.text
    # another alias, named by the environment
    client.set_registered_model_alias(NAME, "canary", "2")
    monkeypatch.setenv("NEXTDAY_FOLLOW_ALIAS", "canary")
    canary = served("2")
    try:
        assert canary.inference.following == f"models:/{NAME}@canary"
    finally:
        canary.inference.stop_following()
        client.delete_registered_model_alias(NAME, "canary")
    # without a tracking URI there is no registry to ask (MLflow's default would create one)
    monkeypatch.setattr("nextday.inference.pyfunc._tracking_uri_set", lambda: False)
    monkeypatch.setenv("NEXTDAY_FOLLOW_ALIAS", "production")
    assert served("1").inference.following is None
    assert "no tracking URI is set" in caplog.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_follows_promote_and_rollback_without_a_failed_request(
    registry, client, tmp_path
):
    """The real scoring server on `models:/nextday-normal@production`, checking every second:
    requests in a loop through a promote and a rollback are all answered, and the prediction
    log names v2, then v1, then v2 again."""
    root, cfg = registry
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    log_url = f"sqlite:///{tmp_path}/served.db"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "NEXTDAY_PREDICTION_LOG_URL": log_url,
        "NEXTDAY_FOLLOW_ALIAS_S": "1",
    }
    env.pop("NEXTDAY_FOLLOW_ALIAS", None)
    server = subprocess.Popen(
        [
            str(Path(bin_dir) / "mlflow"),
            "models", "serve", "-m", ALIAS_URI, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "-w", "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    features = ModelInference(f"models:/{NAME}/2", device="cpu").features
    rows = pd.DataFrame(_rows(4), columns=features)
    statuses: list[tuple[int, int]] = []  # (request, HTTP status)
    stop = threading.Event()

    def loop() -> None:
        with requests.Session() as session:
            request = 0
            while not stop.is_set():
                keyed = rows.assign(symbol=[f"R{request:05d}S{i}" for i in range(len(rows))])
                keyed["date"] = "2024-03-01"
                payload = {
                    "dataframe_split": json.loads(keyed.to_json(orient="split", index=False))
                }
                try:
                    status = session.post(
                        f"{url}/invocations", json=payload, timeout=30
                    ).status_code
                except requests.RequestException:
                    status = -1
                statuses.append((request, status))
                request += 1
                time.sleep(0.05)

    store = Store(log_url)

    def logged() -> pd.DataFrame:
        with contextlib.suppress(sa.exc.OperationalError, pd.errors.DatabaseError):
            return store.read("model_predictions")
        return pd.DataFrame(columns=["symbol", "model_version"])

    def latest_version() -> str | None:
        frame = logged()
        if frame.empty:
            return None
        return str(frame.sort_values("symbol")["model_version"].iloc[-1])

    worker = threading.Thread(target=loop, daemon=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.5)
        worker.start()
        _wait(lambda: latest_version() == "2", 30, "the first logged prediction")
        run_promote(cfg("model=normal", "version=1"))
        _wait(lambda: latest_version() == "1", 60, "the server's switch to v1")
        run_rollback(cfg("model=normal"))
        _wait(lambda: latest_version() == "2", 60, "the server's switch back to v2")
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=40)
        server.terminate()
        try:
            _, stderr = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            _, stderr = server.communicate()
    failed = [(r, s) for r, s in statuses if s != 200]
    assert not failed, (failed[:5], stderr.decode()[-3000:])
    assert len(statuses) > 20
    frame = logged()
    frame["request"] = frame["symbol"].str.slice(1, 6).astype(int)
    per_request = frame.groupby("request")["model_version"].agg(lambda v: "".join(sorted(set(v))))
    assert set(per_request) == {"1", "2"}  # one version per request
    sequence = list(per_request.sort_index())
    changes = [a + b for a, b in zip(sequence, sequence[1:], strict=False) if a != b]
    assert changes == ["21", "12"], sequence
    assert "now serving version 1 (was version 2" in stderr.decode()

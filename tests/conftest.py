"""Shared fixtures: the real config composed from conf/, and a throwaway PostgreSQL server."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from nextday.config import compose

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import local_postgres


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Registry downloads of ModelInference go to a folder of this test session, not to the
    user's ~/.cache (a test may still point NEXTDAY_MODEL_CACHE elsewhere)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEXTDAY_MODEL_CACHE", str(tmp_path_factory.mktemp("model-cache")))
        yield


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A fresh paths.root, and no tracking URI leaking in from the environment."""
    for name in MLFLOW_RUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEXTDAY_ROOT", str(tmp_path))
    return tmp_path


MLFLOW_RUN_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


@contextlib.contextmanager
def quick_root(root: Path):
    """For module-scoped fixtures: `root` as paths.root with no MLflow variables leaking in;
    yields cfg(*overrides), the quick preset's config there."""
    with pytest.MonkeyPatch.context() as patch:
        for name in MLFLOW_RUN_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("NEXTDAY_ROOT", str(root))
        yield lambda *overrides: compose(["experiment=quick", f"paths.root={root}", *overrides])


@contextlib.contextmanager
def stack_folder(prefix: str):
    """An empty folder for scripts/team_stack.py, removed afterwards. Without PostgreSQL the
    test is skipped (it fails in CI). Not pytest's tmp_path: as root, PostgreSQL runs as a
    user that must enter the folder."""
    try:
        local_postgres.tool("initdb")
    except FileNotFoundError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def quick_cfg(root):
    return compose(["experiment=quick", f"paths.root={root}"])


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL 15 server on a free loopback port for this test session.

    NEXTDAY_TEST_PG_URL (set by .ci/run, which starts a server) is used when present. Without
    it, one is started here. In CI (CI=true) a missing server fails instead of skipping.
    """
    given = os.environ.get("NEXTDAY_TEST_PG_URL")
    if given:
        yield given
        return
    folder = Path(tempfile.mkdtemp(prefix="nextday-pg-"))
    try:
        url = local_postgres.start(folder)
    except FileNotFoundError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    try:
        yield url
    finally:
        local_postgres.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    deadline = time.time() + 20
    while True:
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            break
        except sa.exc.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    admin.dispose()
    return pg_server.rsplit("/", 1)[0] + f"/{name}"

"""Shared fixtures: the real config composed from conf/, the quick pipeline built once per
session (and copied for the modules that add to it), and a throwaway PostgreSQL server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
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


# Tests that use one of these fixtures need an MLflow root, a database or the quick pipeline,
# and those with one of these marks a database, a browser or a minute: they are all
# `integration` (left out by `make test-fast`) without being marked one by one. `daily` and
# `vendor` are the module pipelines of tests/test_forecast.py.
INTEGRATION_FIXTURES = frozenset(
    {"root", "quick_cfg", "pg_server", "pg_url", "quick_chain", "daily", "vendor"}
)
INTEGRATION_MARKS = ("slow", "postgres", "browser")


def pytest_collection_modifyitems(config, items):
    """The test tiers and their order (README, "Tests"):

    - a test using an INTEGRATION_FIXTURES fixture, or with an INTEGRATION_MARKS mark, is
      also `integration`;
    - modules holding a `slow` test run first, the longest first (`slow(seconds=...)`, its
      time on two cores; 20 when not given), so that the workers finish at about the same
      time (the order within a module is kept). `make test` keeps each module on one
      pytest-xdist worker (`--dist loadfile`), so that its fixtures are built once: two
      tests that take minutes each and share nothing go in two modules."""
    for item in items:
        marked = any(item.get_closest_marker(name) for name in INTEGRATION_MARKS)
        if marked or INTEGRATION_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
    weight: dict[Path, float] = {}
    for item in items:
        if (mark := item.get_closest_marker("slow")) is not None:
            seconds = float(mark.kwargs.get("seconds", 20))
            weight[item.path] = max(weight.get(item.path, 0.0), seconds)
    items.sort(key=lambda item: -weight.get(item.path, 0.0))  # stable


def copy_root(source: Path, target: Path) -> Path:
    """A copy of the quick root `source` at `target` (which must not exist), as if its runs
    had been made there: the paths in the MLflow store (artifact locations, model sources,
    the paths.* params) and in the logged MLmodel and config files name the copy, so new
    runs, registrations and downloads stay inside it."""
    shutil.copytree(source, target, symlinks=True)
    old, new = str(source), str(target)
    with contextlib.closing(sqlite3.connect(target / "mlflow.db")) as db, db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                quoted = f'"{column}"'
                db.execute(
                    f'UPDATE "{table}" SET {quoted} = replace({quoted}, ?, ?) '
                    f"WHERE typeof({quoted}) = 'text' AND instr({quoted}, ?) > 0",
                    (old, new, old),
                )
    for path in (target / "mlartifacts").rglob("*"):
        if path.name == "MLmodel" or path.suffix == ".yaml":
            text = path.read_text()
            if old in text:
                path.write_text(text.replace(old, new))
    return target


@dataclass(frozen=True)
class QuickChain:
    """The quick pipeline of the normal model, built once per test session in two roots
    that no test writes to: `calibrated` after prepare, train and calibrate, and `exported`
    after those and an export (registered as version 1 of nextday-normal). `runs`: the run
    id of each step. A module that only reads a root opens it as it is (`chain.open(...)`);
    one that runs more steps, registers versions or writes to the store opens its own copy
    (`chain.open(..., copy=True)`)."""

    calibrated: Path
    exported: Path
    runs: dict[str, str]
    factory: pytest.TempPathFactory

    @contextlib.contextmanager
    def open(self, which: str, copy: bool = False):
        """Root `which` ("calibrated" or "exported"), or a fresh copy of it, as paths.root
        and MLflow's tracking store; yields (root, cfg) with cfg as quick_root's."""
        from nextday.tracking import configure

        root = getattr(self, which)
        if copy:
            folder = self.factory.mktemp(f"copy-of-{which}")
            folder.rmdir()
            root = copy_root(root, folder)
        with quick_root(root) as cfg:
            configure(cfg())
            yield root, cfg


def _build_chain(calibrated: Path, exported: Path) -> dict[str, str]:
    from nextday.steps.calibrate import run_calibrate
    from nextday.steps.export import run_export
    from nextday.steps.prepare import run_prepare
    from nextday.steps.train import run_train

    with quick_root(calibrated) as cfg:
        runs = {"prepare": run_prepare(cfg()), "train": run_train(cfg())}
        runs["calibrate"] = run_calibrate(cfg())
    copy_root(calibrated, exported)
    with quick_root(exported) as cfg:
        runs["export"] = run_export(cfg())
    return runs


@pytest.fixture(scope="session")
def quick_chain(tmp_path_factory) -> QuickChain:
    """prepare, train, calibrate and export on the quick preset (normal model), once: under
    pytest-xdist the first worker to need it builds it in the run's shared temporary folder
    while the others wait for it (a lock), and every worker reads the same roots."""
    import fcntl

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker else base
    calibrated, exported = shared / "quick-chain-calibrated", shared / "quick-chain-exported"
    done = shared / "quick-chain.json"
    with open(shared / "quick-chain.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                for folder in (calibrated, exported):
                    shutil.rmtree(folder, ignore_errors=True)
                calibrated.mkdir()
                done.write_text(json.dumps(_build_chain(calibrated, exported)))
            runs = json.loads(done.read_text())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return QuickChain(calibrated, exported, runs, tmp_path_factory)


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

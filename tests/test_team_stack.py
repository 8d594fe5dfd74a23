"""The team setup end to end: scripts/team_stack.py brings up PostgreSQL, moto's S3 server and an
MLflow tracking server on loopback, and the whole quick pipeline runs against it as a user runs
it (`source stack.env; python -m nextday main experiment=quick store=postgres`).

The checks read the real parts: runs and registry rows in the `mlflow` database, objects in the
bucket, the project's tables in the `nextday` database.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

import mlflow
import pytest
import sqlalchemy as sa

import team_stack
from conftest import stack_folder

pytestmark = [pytest.mark.postgres, pytest.mark.slow(seconds=85)]

MODELS = ("normal", "earnings")
MODEL_STEPS = ("train", "calibrate", "export", "backtest")
EXPERIMENT = "nextday"
N_SYMBOLS = 30  # experiment=quick


@pytest.fixture(scope="module")
def stack():
    """The stack, up in a fresh folder for this module and down after it, even on failure."""
    with stack_folder("nextday-team-") as folder, team_stack.running(folder) as running:
        yield running


def _sourced_env(stack: team_stack.Stack) -> dict[str, str]:
    """The environment of a shell that sourced stack.env, with no MLflow, AWS or nextday
    variable of this process leaking in."""
    base = {k: v for k, v in team_stack.clean_env({}).items() if not k.startswith("NEXTDAY_")}
    shell = subprocess.run(
        ["bash", "-c", f"source {shlex.quote(str(stack.path / 'stack.env'))} && env -0"],
        env=base,
        capture_output=True,
        check=True,
    )
    return dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if item)


@pytest.fixture(scope="module")
def pipeline(stack):
    """`python -m nextday main experiment=quick store=postgres`, once, in a fresh root."""
    root = stack.path / "root"
    root.mkdir()
    env = _sourced_env(stack)
    assert {k: env[k] for k in stack.env} == stack.env
    env.update(NEXTDAY_ROOT=str(root), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "nextday", "main", "experiment=quick", "store=postgres"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"main exited with {result.returncode}:\n{result.stderr[-5000:]}"
    return root


def _runs(stack: team_stack.Stack) -> list[dict]:
    """Every run of the experiment, read from the server's PostgreSQL database."""
    query = sa.text(
        """
        SELECT r.run_uuid AS id, r.status, r.artifact_uri, r.experiment_id,
               step.value AS step, model.value AS model, parent.value AS parent
        FROM runs r
        JOIN experiments e ON e.experiment_id = r.experiment_id
        LEFT JOIN tags step ON step.run_uuid = r.run_uuid AND step.key = 'nextday.step'
        LEFT JOIN tags model ON model.run_uuid = r.run_uuid AND model.key = 'nextday.model'
        LEFT JOIN tags parent ON parent.run_uuid = r.run_uuid AND parent.key = 'mlflow.parentRunId'
        WHERE e.name = :experiment
        """
    )
    engine = sa.create_engine(stack.backend_store_uri)
    try:
        with engine.connect() as connection:
            rows = connection.execute(query, {"experiment": EXPERIMENT}).mappings().all()
    finally:
        engine.dispose()
    return [dict(row) for row in rows]


def _one(runs: list[dict], step: str, model: str | None = None) -> dict:
    (run,) = [r for r in runs if r["step"] == step and r["model"] == model]
    return run


def _client(stack: team_stack.Stack) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)


def test_runs_are_in_postgresql(stack, pipeline):
    runs = _runs(stack)
    main = _one(runs, "main")
    children = [r for r in runs if r["id"] != main["id"]]
    assert sorted((r["step"], r["model"] or "") for r in children) == sorted(
        [("prepare", ""), *((step, model) for step in MODEL_STEPS for model in MODELS)]
    )
    assert main["parent"] is None
    assert {r["parent"] for r in children} == {main["id"]}
    assert {r["status"] for r in runs} == {"FINISHED"}
    # artifacts go through the server (proxied), never to a path of the client's machine
    for run in runs:
        assert run["artifact_uri"].startswith("mlflow-artifacts:/"), run
    # and the parent names its children, as the server reports them
    tags = _client(stack).get_run(main["id"]).data.tags
    assert tags["nextday.run.prepare"] == _one(runs, "prepare")["id"]
    for model in MODELS:
        assert tags[f"nextday.run.export.{model}"] == _one(runs, "export", model)["id"]


def test_both_models_are_registered(stack, pipeline):
    runs = _runs(stack)
    client = _client(stack)
    for model in MODELS:
        versions = client.search_model_versions(f"name = 'nextday-{model}'")
        assert versions, f"no version of nextday-{model}"
        assert {v.run_id for v in versions} == {_one(runs, "export", model)["id"]}
        assert all(v.tags["nextday.gate"] for v in versions)


def test_artifacts_are_in_the_bucket(stack, pipeline):
    s3 = team_stack.s3_client(stack)
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=team_stack.BUCKET, Prefix=f"{team_stack.PREFIX}/"
    )
    keys = {item["Key"] for page in pages for item in page.get("Contents", [])}
    runs = _runs(stack)
    prepare = _one(runs, "prepare")
    run_prefix = f"{team_stack.PREFIX}/{prepare['experiment_id']}/{prepare['id']}/artifacts"
    assert f"{run_prefix}/dataset/dataset.parquet" in keys
    client = _client(stack)
    for model in MODELS:
        export = _one(runs, "export", model)
        assert (
            f"{team_stack.PREFIX}/{export['experiment_id']}/{export['id']}/artifacts/metadata.json"
            in keys
        )
        for version in client.search_model_versions(f"name = 'nextday-{model}'"):
            # MLflow 3 logs the model as a LoggedModel: the version's source is models:/<id>
            model_id = version.model_id or version.source.removeprefix("models:/")
            assert model_id.startswith("m-"), version.source
            files = [k for k in keys if f"/models/{model_id}/artifacts/" in k]
            names = {k.rsplit("/", 1)[-1] for k in files}
            assert "MLmodel" in names, files
            assert any(name.endswith(".onnx") for name in names), files
    # nothing went to a local artifact folder or a local tracking or store database instead
    for folder in (pipeline, stack.path):
        assert not (folder / "mlartifacts").exists()
        assert not (folder / "mlflow.db").exists()
    assert not (pipeline / "data" / "nextday.db").exists()


def test_store_is_the_stacks_postgresql(stack, pipeline):
    engine = sa.create_engine(stack.store_url)
    try:
        with engine.connect() as connection:
            counts = {
                table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("ohlcv", "earnings", "feature_history")
            }
            symbols = connection.execute(sa.text("SELECT count(DISTINCT symbol) FROM ohlcv"))
            assert symbols.scalar() == N_SYMBOLS
    finally:
        engine.dispose()
    assert all(counts.values()), counts
    # and the database for shared tuning studies is there for the same role
    engine = sa.create_engine(stack.optuna_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT current_user")).scalar() == "nextday"
    finally:
        engine.dispose()

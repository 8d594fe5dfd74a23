"""tune: trials as nested runs, pruning, resuming, workers sharing a PostgreSQL study."""

import logging
import os
import signal
import subprocess
import sys
import time

import mlflow
import optuna
import pytest
import sqlalchemy as sa

from nextday.config import compose
from nextday.contracts import metrics as metric_names
from nextday.contracts.tags import TRIAL_STATE
from nextday.steps.prepare import run_prepare
from nextday.steps.tune import run_tune
from nextday.tuning.study import masked

pytestmark = pytest.mark.slow(seconds=95)

# a small space with fixed choices, so tests can enqueue exact trials (Hydra: drop the
# configured space, then add this one)
SPACE = [
    "~tune.space",
    "+tune.space={train.learning_rate:{choices:[0.001,0.003,1.0e-7]},arch.dropout.0:{low:0.0,high:0.4}}",
]


def _child_runs(parent_id):
    return mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )


def test_trials_are_nested_runs_a_pruned_one_shows_and_a_second_call_continues(root, caplog):
    caplog.set_level(logging.INFO)
    base = [
        "experiment=quick",
        f"paths.root={root}",
        *SPACE,
        "tune.max_epochs=3",
        "tune.pruner.n_startup_trials=1",
        "tune.pruner.n_warmup_steps=0",
        "tune.retrain_best=true",
    ]
    run_prepare(compose(base))
    study = optuna.create_study(
        study_name="nextday-normal", storage=f"sqlite:///{root}/optuna.db", direction="minimize"
    )
    study.enqueue_trial({"train.learning_rate": 0.001, "arch.dropout.0": 0.1})
    study.enqueue_trial(
        {"train.learning_rate": 1.0e-7, "arch.dropout.0": 0.0}
    )  # never learns: pruned
    parent_id = run_tune(compose([*base, "tune.n_trials=3"]), [*base, "tune.n_trials=3"])
    # each finished trial is logged: state, value, best so far, trials and time left
    trial_lines = [r.getMessage() for r in caplog.records if r.name == "nextday.tuning.progress"]
    assert len(trial_lines) == 3
    assert trial_lines[0].startswith("tune: trial 0 COMPLETE, val mae ")
    assert trial_lines[1].startswith("tune: trial 1 PRUNED after epoch ")
    assert "best " in trial_lines[1] and "1 of 3 trials left, about " in trial_lines[1]
    assert "no trials left" in trial_lines[2]
    epochs = [r.getMessage() for r in caplog.records if r.name == "nextday.models.training"]
    assert epochs and all(", val_mae " in line for line in epochs[:2])

    parent = mlflow.get_run(parent_id)
    assert parent.data.tags["nextday.step"] == "tune"
    assert parent.data.tags["nextday.study"] == "nextday-normal"
    children = _child_runs(parent_id)
    assert len(children) == 3
    assert set(children["tags.nextday.step"]) == {"tune.trial"}
    assert set(children["params.train.learning_rate"]) <= {"0.001", "0.003", "1e-07"}
    states = dict(zip(children["tags.nextday.trial"], children[f"tags.{TRIAL_STATE}"], strict=True))
    assert states["0"] == "COMPLETE" and states["1"] == "PRUNED"
    history = mlflow.MlflowClient().get_metric_history(
        children.loc[children["tags.nextday.trial"] == "0", "run_id"].iloc[0], "val_mae"
    )
    assert len(history) >= 1
    # the best configuration was retrained and judged like train, on the parent run
    metrics = parent.data.metrics
    assert {"test_mae", "baseline_zero_test_mae", "best_value", "trials_pruned"} <= set(metrics)
    assert metrics["trials_pruned"] >= 1 and metrics["epochs_run_total"] < metrics["epochs_budget"]
    assert not metric_names.missing("tune", metrics)  # what backtest and export read
    assert parent.data.params["best.train.learning_rate"] in {"0.001", "0.003"}

    second = run_tune(compose([*base, "tune.n_trials=1", "tune.retrain_best=false"]), base)
    study = optuna.load_study(study_name="nextday-normal", storage=f"sqlite:///{root}/optuna.db")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert len(_child_runs(second)) == 1


def _worker(root, env, *extra, trials=2):
    command = [
        sys.executable,
        "-m",
        "nextday",
        "tune",
        "experiment=quick",
        f"paths.root={root}",
        "tune.retrain_best=false",
        f"tune.n_trials={trials}",
        *extra,
    ]
    return subprocess.Popen(
        command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture
def shared(root, pg_url, monkeypatch):
    """PostgreSQL for both the Optuna study and MLflow tracking, with a prepared dataset:
    returns the workers' environment, the study's URL and the overrides every worker takes."""
    tracking = pg_url
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    cfg = compose(["experiment=quick", f"paths.root={root}"])
    prepare_id = run_prepare(cfg)  # also creates MLflow's tables and the experiment
    optuna_url = pg_url.rsplit("/", 1)[0] + "/optuna_" + pg_url.rsplit("/", 1)[1]
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{optuna_url.rsplit("/", 1)[1]}"'))
    admin.dispose()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return env, optuna_url, [f"tune.storage={optuna_url}", f"inputs.prepare_run_id={prepare_id}"]


@pytest.mark.postgres
def test_two_workers_share_one_postgres_study(root, shared):
    env, optuna_url, common = shared
    extra = [*common, "tune.study_name=shared"]
    workers = [_worker(root, env, *extra) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    study = optuna.load_study(study_name="shared", storage=optuna_url)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == [0, 1, 2, 3]  # four trials, no number twice
    parents = mlflow.search_runs(
        experiment_names=["nextday"], filter_string="tags.`nextday.step` = 'tune'"
    )
    assert len(parents) == 2 and set(parents["tags.nextday.study.storage"]) == {masked(optuna_url)}
    owners = {t.user_attrs["mlflow_run_id"] for t in study.trials}
    assert len(owners) == 4


@pytest.mark.postgres
def test_a_killed_worker_leaves_the_study_usable(root, shared):
    env, optuna_url, common = shared
    extra = [
        *common,
        "tune.study_name=killed",
        "tune.heartbeat.interval=1",
        "tune.heartbeat.grace_period=2",
        "tune.pruner.kind=none",
    ]
    doomed = _worker(root, env, *extra, "tune.max_epochs=400", "train.patience=400", trials=1)
    deadline = time.time() + 120
    running = []
    while time.time() < deadline and not running:
        time.sleep(1)
        try:
            study = optuna.load_study(study_name="killed", storage=optuna_url)
            running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the study does not exist yet
            continue
    assert running, "the worker never started a trial"
    time.sleep(2)  # let it train a little
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    time.sleep(3)  # past the grace period: the trial's heartbeat is stale
    survivor = _worker(root, env, *extra, "tune.max_epochs=2", trials=1)
    output = survivor.communicate(timeout=300)[0]
    assert survivor.returncode == 0, output[-3000:]
    states = {
        t.number: t.state for t in optuna.load_study(study_name="killed", storage=optuna_url).trials
    }
    assert states == {0: optuna.trial.TrialState.FAIL, 1: optuna.trial.TrialState.COMPLETE}

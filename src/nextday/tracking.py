"""MLflow conventions of nextday: where runs go, how steps are tagged and how they find inputs.

Tags (nextday.contracts.tags): `nextday.step` on every run, `nextday.model` on model steps,
`nextday.input.<step>` for each upstream run consumed. MLFLOW_TRACKING_URI wins over the
configured URI; under `mlflow run`, MLFLOW_RUN_ID names the run to use.

Where a run goes (the `mlflow` group), where its scratch files live (`paths.work_dir`) and the
config logged whole are not what a step computes from: tracking reads them `unrecorded`, so
they are no part of `main`'s reuse key (nextday.config_reads).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from nextday.config import flatten
from nextday.config_reads import unrecorded
from nextday.contracts import artifacts, tags
from nextday.evaluation import metrics as evaluation_metrics

# keys that could hold a secret never go to params (secrets come from env vars anyway)
SECRET_WORDS = ("password", "secret", "token", "key_id", "access_key")


# mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI (for subprocesses): remember what
# we exported, so that only a value the user set counts as "set in the environment".
_exported: dict[str, str | None] = {"uri": None}


def user_tracking_uri() -> str | None:
    """MLFLOW_TRACKING_URI as the user set it (not as this process exported it)."""
    value = os.environ.get("MLFLOW_TRACKING_URI")
    return value if value and value != _exported["uri"] else None


def configure(cfg: DictConfig) -> str:
    """Point MLflow at the tracking store: MLFLOW_TRACKING_URI if set, else the config's."""
    with unrecorded(cfg):
        uri = user_tracking_uri() or str(cfg.mlflow.tracking_uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if uri != user_tracking_uri():
        _exported["uri"] = uri
    return uri


def _experiment_id(cfg: DictConfig) -> str:
    """The configured experiment, created with its artifacts under paths.root when local."""
    name = str(cfg.mlflow.experiment_name)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if mlflow.get_tracking_uri() == str(cfg.mlflow.tracking_uri) and cfg.mlflow.get(
        "artifact_location"
    ):
        location = Path(str(cfg.mlflow.artifact_location)).resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:
        # another worker created it between our lookup and our create
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


# the configured experiment (mlflow.experiment_name) of the step running: where its inputs are
# looked for beside the active run's own experiment
_configured: dict[str, str | None] = {"experiment": None}
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's `Default`, where `mlflow run` puts runs by default


def input_experiments() -> list[str]:
    """The experiments a step looks for its inputs in: the active run's, the configured one
    (`mlflow.experiment_name`) and MLflow's `Default`. `mlflow run .` without
    `--experiment-name` runs in `Default` and `python -m nextday` in the configured one: each
    door finds the other's runs (the newest run of the step wins, wherever it is)."""
    ids = [mlflow.active_run().info.experiment_id]
    name = _configured["experiment"]
    configured = mlflow.get_experiment_by_name(name) if name else None
    for experiment_id in (configured.experiment_id if configured else None, DEFAULT_EXPERIMENT_ID):
        if experiment_id is not None and experiment_id not in ids and _exists(experiment_id):
            ids.append(experiment_id)
    return ids


def _exists(experiment_id: str) -> bool:
    try:
        return mlflow.get_experiment(experiment_id) is not None
    except MlflowException:  # a tracking server without a Default experiment
        return False


def describe_experiments(ids: list[str]) -> str:
    """The experiments of `ids` by name, for an error that says where it looked."""
    names = []
    for experiment_id in ids:
        experiment = mlflow.get_experiment(experiment_id)
        names.append(repr(experiment.name if experiment else experiment_id))
    return " or ".join(names)


@contextlib.contextmanager
def step_run(cfg: DictConfig, step: str, model: str | None = None) -> Iterator[Run]:
    """Start (or, under `mlflow run`, resume) the run of one step, tagged and with its config.

    Nested inside an active run (the `main` chain) it becomes a child run.
    """
    configure(cfg)
    evaluation_metrics.configure(cfg.evaluation)
    with unrecorded(cfg):
        _configured["experiment"] = str(cfg.mlflow.experiment_name)
    active = mlflow.active_run()
    kwargs = {}
    if active is not None:
        kwargs["experiment_id"] = active.info.experiment_id
    elif not os.environ.get("MLFLOW_RUN_ID"):
        with unrecorded(cfg):
            kwargs["experiment_id"] = os.environ.get("MLFLOW_EXPERIMENT_ID") or _experiment_id(cfg)
    name = f"{step}-{model}" if model else step
    with mlflow.start_run(run_name=name, nested=active is not None, **kwargs) as run:
        mlflow.set_tag(tags.STEP, step)
        if model:
            mlflow.set_tag(tags.MODEL, model)
        log_config(cfg)
        yield run


def log_config(cfg: DictConfig) -> None:
    """The composed config as config.yaml and flattened into params (secrets left out)."""
    with unrecorded(cfg):
        mlflow.log_text(OmegaConf.to_yaml(cfg), artifacts.CONFIG.path)
        flat = flatten(cfg)
    params = {
        key: value[:500]
        for key, value in flat.items()
        if not any(word in key.lower() for word in SECRET_WORDS)
    }
    items = list(params.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


def find_input_run(
    step: str | tuple[str, ...],
    run_id: str | None,
    model: str | None = None,
    accept: Callable[[Run], bool] | None = None,
    hint: str | None = None,
) -> Run:
    """The run a step consumes: `run_id` when given, else the newest FINISHED run of `step`
    (or of any of several steps), of `model` where given, that `accept` (if any) takes.

    The search is in the active run's experiment; the consumed id is tagged on the active run
    as nextday.input.<its step>.
    """
    steps = (step,) if isinstance(step, str) else tuple(step)
    wanted = " or ".join(repr(s) for s in steps) + (f" run of model={model}" if model else " run")
    client = mlflow.tracking.MlflowClient()
    if run_id:
        run = client.get_run(run_id)
        found_step, found_model = run.data.tags.get(tags.STEP), run.data.tags.get(tags.MODEL)
        if found_step not in steps or (model and found_model != model):
            raise ValueError(
                f"run {run_id} is a {found_step!r} run"
                + (f" of model={found_model}" if model else "")
                + f", not a {wanted}"
            )
    else:
        experiments = input_experiments()
        found: list[Run] = []
        for name in steps:  # MLflow's search has no IN for tags
            query = f"tags.`{tags.STEP}` = '{name}' and attributes.status = 'FINISHED'"
            if model:
                query += f" and tags.`{tags.MODEL}` = '{model}'"
            found += client.search_runs(
                experiments,
                query,
                order_by=["attributes.start_time DESC"],
                max_results=1 if accept is None else 1000,
            )
        found.sort(key=lambda r: r.info.start_time, reverse=True)
        run = next((r for r in found if accept is None or accept(r)), None)
        if run is None:
            raise LookupError(
                f"no finished {wanted} in the experiment {describe_experiments(experiments)}: "
                + (
                    hint
                    or f"run `python -m nextday {steps[0]}` first or pass inputs.{steps[0]}_run_id=<run id>"
                )
            )
    mlflow.set_tag(tags.input_tag(run.data.tags[tags.STEP]), run.info.run_id)
    return run


@contextlib.contextmanager
def artifact_dir(cfg: DictConfig) -> Iterator[Path]:
    """A scratch folder under paths.work_dir whose files are logged as the run's artifacts."""
    with unrecorded(cfg):
        work = Path(str(cfg.paths.work_dir))
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="run-") as folder:
        yield Path(folder)

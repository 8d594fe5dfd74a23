"""`tune`: an Optuna study as nested MLflow runs, pruned, resumable, shareable by workers.

The tune run is the parent; every trial is a child run with its params, per-epoch losses and
objective, final value and state (COMPLETE, PRUNED, FAIL). Trials are judged on validation
rows only: the test segment is never seen while tuning. After the search, the study's best
configuration is retrained and logged as this run's model with the same evaluation as train.
Each trial's start, epochs and end are logged as they happen (`tuning.progress`), and
Optuna's progress bar is drawn on a terminal (`tune.progress_bar`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import mlflow
import optuna
from omegaconf import DictConfig

from nextday.contracts import metrics as metric_names
from nextday.contracts import tags
from nextday.evaluation.metrics import POINT_METRICS, prefixed
from nextday.models.spec import model_spec
from nextday.steps.fitting import train_and_log
from nextday.steps.inputs import Prepared, load_prepared, prepared_spec, transfer_source
from nextday.tracking import artifact_dir, find_input_run, step_run
from nextday.tuning.progress import TrialLog, optuna_quiet, show_bar
from nextday.tuning.space import check_space, suggest, trial_config
from nextday.tuning.study import masked, open_study, storage_url
from nextday.tuning.trial import fit_trial

log = logging.getLogger(__name__)

TRIAL_STEP = "tune.trial"


def run_tune(cfg: DictConfig, overrides: list[str] | None = None) -> str:
    overrides = list(overrides or [])
    spec = model_spec(cfg)
    if str(cfg.tune.objective) not in POINT_METRICS:
        raise ValueError(f"tune.objective={cfg.tune.objective!r}: expected one of {POINT_METRICS}")
    check_space(cfg.tune.space, cfg)
    bar = show_bar(cfg.tune.progress_bar)
    max_epochs = int(cfg.tune.max_epochs or spec.max_epochs)
    url = storage_url(cfg)
    with step_run(cfg, "tune", model=spec.name) as parent, artifact_dir(cfg) as out:
        prepare_run = find_input_run("prepare", cfg.inputs.get("prepare_run_id"))
        prepared = load_prepared(prepare_run.info.run_id, out / "inputs")
        prepared_spec(cfg, prepared)  # too few rows for this model: fails before any trial
        overrides = [*overrides, f"inputs.prepare_run_id={prepare_run.info.run_id}"]
        study = open_study(cfg, url, max_epochs, worker=parent.info.run_id)
        mlflow.set_tags({tags.STUDY: study.study_name, tags.STUDY_STORAGE: masked(url)})
        mine: list[int] = []
        n_trials = int(cfg.tune.n_trials)
        timeout = float(cfg.tune.timeout) if cfg.tune.get("timeout") else None
        with optuna_quiet():
            study.optimize(
                lambda trial: _objective(trial, cfg, overrides, prepared, max_epochs, out, mine),
                n_trials=n_trials,
                timeout=timeout,
                catch=(Exception,),
                callbacks=[TrialLog(n_trials, str(cfg.tune.objective), timeout)],
                gc_after_trial=True,
                show_progress_bar=bar,
            )
        _log_study(study, mine, max_epochs, out)
        if cfg.tune.retrain_best and _completed(study):
            best = study.best_trial
            mlflow.set_tag(tags.BEST_TRIAL, best.number)
            mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
            best_cfg = trial_config(overrides, best.params, None)
            train_and_log(best_cfg, prepared_spec(best_cfg, prepared), prepared, out)
        log.info(
            "tune: %d trials by this worker; study best %s -> run %s",
            len(mine),
            study.best_value if _completed(study) else None,
            parent.info.run_id,
        )
        return parent.info.run_id


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _objective(
    trial, cfg, overrides, prepared: Prepared, max_epochs: int, out: Path, mine: list[int]
):
    """One trial as a nested MLflow run: its params, per-epoch metrics, scores and state."""
    mine.append(trial.number)
    params = suggest(trial, cfg.tune.space)
    log.info("tune: trial %d starts: %s", trial.number, _described(params))
    metric = str(cfg.tune.objective)
    with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True) as child:
        trial.set_user_attr("mlflow_run_id", child.info.run_id)
        mlflow.set_tags(
            {
                tags.STEP: TRIAL_STEP,
                tags.MODEL: cfg.model.name,
                tags.TRIAL: trial.number,
                tags.STUDY: trial.study.study_name,
            }
        )
        mlflow.log_params(params)
        try:
            trial_cfg = trial_config(overrides, params, max_epochs)
            spec = prepared_spec(trial_cfg, prepared)
            folder = out / f"trial-{trial.number}"
            result = fit_trial(
                trial,
                spec,
                trial_cfg.train,
                (prepared.dataset, prepared.truth),
                metric,
                folder / "best.keras",
                lambda epoch, values: mlflow.log_metrics(values, step=epoch),
                transfer_source(trial_cfg, spec, folder / "transfer"),
            )
        except Exception:
            mlflow.set_tag(tags.TRIAL_STATE, "FAIL")  # Optuna records it as failed, goes on
            raise
        mlflow.log_metric("epochs_run", result.epochs_run)
        if result.pruned is None:
            mlflow.log_metrics({**prefixed(result.scores, "val"), "objective": result.value})
        mlflow.set_tag(tags.TRIAL_STATE, "PRUNED" if result.pruned else "COMPLETE")
    if result.pruned is not None:
        raise result.pruned  # after the child run ended: a pruned trial's run is FINISHED
    return result.value


def _described(params: dict) -> str:
    """A trial's parameters, short: floats to 3 significant digits."""
    return ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )


def _log_study(study: optuna.Study, mine: list[int], max_epochs: int, out: Path) -> None:
    """Best params and value, trial counts, epochs pruning saved, and the study's plots."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    states = [trials[n].state.name for n in mine if n in trials]
    epochs = [len(trials[n].intermediate_values) for n in mine if n in trials]
    metrics: dict[str, float] = {
        "trials_run": len(mine),
        "trials_complete": states.count("COMPLETE"),
        "trials_pruned": states.count("PRUNED"),
        "trials_failed": states.count("FAIL"),
        metric_names.STUDY_TRIALS: len(trials),
        "epochs_run_total": sum(epochs),
        "epochs_budget": max_epochs * len(mine),
    }
    for trial in trials.values():
        if trial.state == optuna.trial.TrialState.FAIL and trial.number not in mine:
            log.info("tune: trial %d of the study failed (a stale or broken worker)", trial.number)
    complete = _completed(study)
    if complete:
        metrics["best_value"] = float(study.best_value)
        mlflow.set_tag(tags.BEST_TRIAL_RUN, study.best_trial.user_attrs.get("mlflow_run_id", ""))
    mlflow.log_metrics(metrics)
    folder = out / "study"
    folder.mkdir(exist_ok=True)
    study.trials_dataframe().to_csv(folder / "trials.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as optuna_plots

        if complete:
            optuna_plots.plot_optimization_history(study)
            plt.gcf().savefig(folder / "optimization_history.png", dpi=110, bbox_inches="tight")
            plt.close("all")
        if len(complete) >= 2:
            try:
                optuna_plots.plot_param_importances(study)
                plt.gcf().savefig(folder / "param_importances.png", dpi=110, bbox_inches="tight")
            except (ValueError, RuntimeError) as error:  # e.g. every trial had the same params
                log.info("tune: no parameter importances: %s", error)
            plt.close("all")
    mlflow.log_artifacts(str(folder), "study")

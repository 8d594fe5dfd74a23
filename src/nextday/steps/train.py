"""`train`: fit one model (normal or earnings, mlp or lstm) and judge it honestly.

The run (tags nextday.step=train, nextday.model) logs per-epoch loss and val_loss, the model's
metrics per segment beside the baselines and the oracle, Diebold-Mariano tests against the
zero predictor and the best baseline, the seed's MAE targets beside the zero predictor's MAE,
permutation importance, plots, a validation report, the model's files (spec, feature
processor, best weights) and the model as an MLflow model with a signature and an input
example.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig

from nextday.contracts import artifacts, tags
from nextday.evaluation import validation_report
from nextday.evaluation.judging import JudgingSettings, judge
from nextday.models.baselines import Baselines
from nextday.models.model import NextdayModel
from nextday.models.spec import ModelSpec, model_spec
from nextday.steps.inputs import Prepared, load_prepared, prepared_spec, transfer_source
from nextday.tracking import artifact_dir, find_input_run, step_run

log = logging.getLogger(__name__)


def run_train(cfg: DictConfig) -> str:
    spec = model_spec(cfg)  # a bad config fails here, before any data is read
    with step_run(cfg, "train", model=spec.name) as run, artifact_dir(cfg) as out:
        prepare_run = find_input_run("prepare", cfg.inputs.get("prepare_run_id"))
        prepared = load_prepared(prepare_run.info.run_id, out / "inputs")
        spec = prepared_spec(cfg, prepared)  # too few rows for this model: fails here
        metrics = train_and_log(cfg, spec, prepared, out)
        log.info(
            "train %s/%s: test MAE %.5f (zero %.5f), test IC %.4f -> run %s",
            spec.name,
            spec.arch,
            metrics.get("test_mae", float("nan")),
            metrics.get("baseline_zero_test_mae", float("nan")),
            metrics.get("test_ic", float("nan")),
            run.info.run_id,
        )
        return run.info.run_id


def train_and_log(cfg: DictConfig, spec: ModelSpec, prepared: Prepared, out: Path) -> dict:
    """Fit, judge and log into the active run (train, and tune's retrained best model)."""
    mlflow.set_tag(tags.ARCH, spec.arch)

    def log_losses(epoch: int, logs: dict) -> None:
        losses = {k: float(v) for k, v in logs.items() if k in ("loss", "val_loss")}
        mlflow.log_metrics(losses, step=epoch)

    model = NextdayModel.from_config(spec, cfg.train).fit(
        prepared.dataset,
        prepared.truth,
        checkpoint=out / artifacts.CHECKPOINT.name,
        on_epoch=log_losses,
        start_from=transfer_source(cfg, spec, out / "transfer"),
    )
    baselines = Baselines.from_config(model.fitted_processor(), cfg.train.baselines, spec.seed)
    baselines.fit_model_rows(model.fitted_data())
    settings = JudgingSettings.from_config(cfg, spec.name)
    judged = judge(model, baselines, settings, out / "report")
    mlflow.set_tag(tags.BEST_BASELINE, judged.best_baseline)
    mlflow.log_metrics(judged.metrics)
    _log_model(model, out)
    (out / "validation_report.md").write_text(validation_report.render(spec, judged, settings))
    mlflow.log_artifacts(str(out / "report"), "report")
    mlflow.log_artifact(str(out / "validation_report.md"))
    return judged.metrics


def _log_model(model: NextdayModel, out: Path) -> None:
    """model_files/ (what calibrate and export load) and the Keras model as an MLflow model
    with a tensor signature (the served, DataFrame-in model is export's ONNX one)."""
    import mlflow.tensorflow
    from mlflow.models import infer_signature

    from nextday.models.networks import Winsorize

    mlflow.log_artifacts(str(model.save(out / artifacts.MODEL_FILES)), artifacts.MODEL_FILES)
    example = np.asarray(model.fitted_data().judged["test"].x[:5], dtype=np.float32)
    signature = infer_signature(example, model.predict(example).astype(np.float32))
    mlflow.tensorflow.log_model(
        model.fitted_network(),
        name="model",
        signature=signature,
        input_example=example,
        custom_objects={"Winsorize": Winsorize},
    )

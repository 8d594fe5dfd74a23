"""The one training path logged into the active run: fit, judge beside the baselines, log the
model (train, and tune's retrained best configuration). A helper of the steps, not a step."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig

from nextday.contracts import artifacts, tags
from nextday.evaluation import validation_report
from nextday.evaluation.judging import JudgingSettings, judge
from nextday.models.baselines import Baselines
from nextday.models.model import NextdayModel
from nextday.models.spec import ModelSpec
from nextday.steps.inputs import Prepared, transfer_source


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


# the Keras model's requirements, pinned to this environment: what MLflow's inference finds
# (it imports the model in a subprocess, about 10 s of every train run), given instead
KERAS_MODEL_PACKAGES = ("mlflow", "cloudpickle", "nextday", "numpy", "pandas", "tensorflow")


def _log_model(model: NextdayModel, out: Path) -> None:
    """model_files/ (what calibrate and export load) and the Keras model as an MLflow model
    with a tensor signature (the served, DataFrame-in model is export's ONNX one)."""
    from importlib.metadata import version

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
        pip_requirements=[f"{name}=={version(name)}" for name in KERAS_MODEL_PACKAGES],
    )

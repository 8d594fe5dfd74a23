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

from omegaconf import DictConfig

from nextday.contracts import metrics as metric_names
from nextday.models.spec import model_spec
from nextday.steps.fitting import train_and_log
from nextday.steps.inputs import load_prepared, prepared_spec
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
            metric_names.read_optional(metrics, metric_names.point("test", "mae")),
            metric_names.read_optional(metrics, metric_names.point("test", "mae", "zero")),
            metric_names.read_optional(metrics, metric_names.point("test", "ic")),
            run.info.run_id,
        )
        return run.info.run_id

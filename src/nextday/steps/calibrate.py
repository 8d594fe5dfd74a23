"""`calibrate`: MC-dropout uncertainty whose 80% interval holds 80% of outcomes.

Reads a train or tune run's model. Measures the raw MC-dropout coverage first (it is far too
low: dropout sees model uncertainty, not the return's own noise), then fits a scale model on
training rows and a split-conformal step on validation rows (`Calibration.fit`), and judges
the result on the test rows (`uncertainty.assessment`): coverage, width and interval score,
CRPS, pinball losses, a reliability diagram, coverage by volatility bucket and by month, a
constant-width interval for comparison, the "just raise dropout" experiment, and the static
interval beside the online rules (ACI and PID) replayed on the test days. The calibration is
logged as `calibration.json`, and the online rule the version will serve (with its volatility
buckets' edges from the training rows) as `online_calibration.json`; export puts both inside
the served model.
"""

from __future__ import annotations

import json
import logging

import mlflow
from omegaconf import DictConfig

from nextday.contracts import artifacts, tags
from nextday.contracts.metrics import level_tag
from nextday.models.spec import model_spec
from nextday.steps.inputs import find_model_run, load_model, load_prepared
from nextday.tracking import artifact_dir, step_run
from nextday.uncertainty import report
from nextday.uncertainty.assessment import AssessmentSettings, assess
from nextday.uncertainty.calibration import (
    Calibration,
    CalibrationSettings,
    calibration_draws,
    draw,
)

log = logging.getLogger(__name__)


def run_calibrate(cfg: DictConfig) -> str:
    name = model_spec(cfg).name
    with step_run(cfg, "calibrate", model=name) as run, artifact_dir(cfg) as out:
        model_run = find_model_run(name, cfg.inputs.get("model_run_id"))
        prepare_id = model_run.data.tags[tags.input_tag("prepare")]
        mlflow.set_tag(tags.input_tag("prepare"), prepare_id)
        prepared = load_prepared(prepare_id, out / "inputs")
        model = load_model(model_run.info.run_id, out / "model")
        data = model.arrange(prepared.dataset, prepared.truth)
        settings = CalibrationSettings.from_config(cfg.calibrate, model.spec)
        # the draws Calibration.fit makes, kept for the report, and every test row
        train, val = calibration_draws(model, data, settings)
        draws = {"val": val, "test": draw(model, data.judged["test"], settings)}
        calibration = Calibration.fit_draws(train, val, settings)
        calibration.to_json(out / artifacts.CALIBRATION.path)
        assessing = AssessmentSettings.from_config(cfg.calibrate)
        assessment = assess(model, calibration, data.judged, draws, assessing)
        mlflow.log_metrics(assessment.metrics)
        report_path = report.write(out, model.spec, assessment, assessing.level)
        online_path = out / artifacts.ONLINE_CALIBRATION.path
        online_path.write_text(json.dumps(assessment.online.to_dict(), indent=2))
        mlflow.log_artifact(str(out / artifacts.CALIBRATION.path))
        mlflow.log_artifact(str(online_path))
        mlflow.log_artifacts(str(out / "report"), "report")
        mlflow.log_artifact(str(report_path))
        tag, metrics = level_tag(assessing.level), assessment.metrics
        log.info(
            "calibrate %s: raw MC test coverage %.3f -> calibrated %.3f (width %.4f) -> run %s",
            name,
            metrics[f"raw_test_coverage_{tag}"],
            metrics[f"test_coverage_{tag}"],
            metrics[f"test_width_{tag}"],
            run.info.run_id,
        )
        return run.info.run_id

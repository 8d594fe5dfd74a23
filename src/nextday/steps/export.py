"""`export`: a calibrated model as ONNX, checked, registered, and promoted if it earns it.

Reads a calibrate run (and through it the model run and the prepare run). Writes four ONNX
files (the calibrated MC graph, its ORT-optimized form, a float16 variant and the
deterministic graph), checks parity with Keras and of the graph's calibration with
`Calibration.apply`, measures the float16 error, judges the served output (the MC graph's) on
validation and test rows beside the zero predictor, writes the drift reference, metadata.json
and the model card, logs the export as an MLflow pyfunc model, registers a version of
`nextday-<model>`, and promotes it when the gate passes. The work is `nextday.export`'s (and
the drift reference `nextday.monitoring.reference`'s); this module finds inputs and logs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from omegaconf import DictConfig

from nextday.contracts import artifacts, tags
from nextday.export import card, gate, judging, metadata, parity, promotion, registry, report
from nextday.export.files import write_onnx
from nextday.export.inputs import ExportInputs
from nextday.export.served import log_served_model
from nextday.export.settings import ExportSettings
from nextday.models.spec import model_spec
from nextday.monitoring.reference import build_reference
from nextday.steps.inputs import download, has_artifact, load_model, load_prepared
from nextday.tracking import artifact_dir, find_input_run, step_run
from nextday.uncertainty.calibration import Calibration
from nextday.uncertainty.online import ServedOnline

log = logging.getLogger(__name__)

REPORT = "export_report.md"
PARITY_TABLE = "parity_deterministic.csv"


def run_export(cfg: DictConfig) -> str:
    settings = ExportSettings.from_config(cfg.export)
    name = model_spec(cfg).name
    with step_run(cfg, "export", model=name) as run, artifact_dir(cfg) as out:
        client = mlflow.MlflowClient()  # after step_run: it points MLflow at the store
        started = time.perf_counter()
        inputs = _read_inputs(
            client, name, cfg.inputs.get("calibrate_run_id"), run, out, settings.online
        )
        model, spec, calibration = inputs.network, inputs.spec, inputs.calibration
        judged = inputs.data.judged
        registered = registry.registered_name(settings.registered_model_prefix, name)
        version = registry.next_version(client, registered)

        folder, passes, seed = out / "export", calibration.passes, settings.seed
        converting = time.perf_counter()
        files = write_onnx(model, spec, calibration, folder, version, passes, seed, settings.opset)
        metrics = {"convert_seconds": time.perf_counter() - converting}
        test_x = judged["test"].x
        checked = parity.check(
            model, spec, calibration, folder, files, test_x, seed, settings.parity
        )
        outputs = judging.served_outputs(folder / files["mc_optimized"], judged)
        metrics |= checked.metrics | judging.judge_served(outputs, judged, inputs.model_metrics)
        if inputs.online is not None:
            online = judging.judge_online(
                outputs["test"], judged["test"], list(spec.features), inputs.online
            )
            metrics |= online
        checks = gate.acceptance(checked, metrics, settings, inputs.online)
        inputs = replace(inputs, online=gate.served_online(metrics, inputs.online, settings.gate))
        train, val, drift_days = judged["train"], judged["val"], int(cfg.monitor.drift_days)
        reference = build_reference(spec.features, train, val, outputs, metrics, drift_days)
        files["reference"] = reference.to_json(folder / artifacts.REFERENCE.name).name
        meta = metadata.build(inputs, registered, version, files, metrics, settings)
        gate_level = settings.gate.significance  # card and report say "beats" at the gate's level
        description = card.render(meta, checks, str(cfg.data.source), significance=gate_level)
        (folder / artifacts.CARD.name).write_text(description)
        metadata.seal(meta, folder)

        served = log_served_model(folder, meta, test_x[:5])
        number = registry.register(client, served.model_uri, meta, checks, description)
        slack = settings.gate.max_val_mae_increase
        checks.append(promotion.versus_production(client, meta, number, val, outputs["val"], slack))
        decision = promotion.decide(client, registered, number, checks, settings.promote)
        metrics["gate_passed"] = float(all(c.passed for c in checks))
        metrics["export_seconds"] = time.perf_counter() - started
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.set_tags(
            {tags.REGISTERED_MODEL: registered, tags.VERSION: number, tags.GATE: decision}
        )
        text = report.render(
            spec, registered, number, metrics, checked, checks, decision, gate_level
        )
        _log_files(out, folder, text, checked)
        log.info(
            "export %s: %s version %s (%s); %s -> run %s",
            *(name, registered, number, decision, report.headline(metrics), run.info.run_id),
        )
        return run.info.run_id


def find_calibrate_run(model: str, run_id: str | None) -> Run:
    return find_input_run(
        "calibrate",
        run_id,
        model=model,
        hint=f"run `python -m nextday calibrate model={model}` or pass "
        "inputs.calibrate_run_id=<run id>",
    )


def _read_inputs(
    client, model: str, calibrate_id: str | None, run: Run, out: Path, serve_online: bool
) -> ExportInputs:
    """The calibrate run, and through it the model and prepare runs (tagged as this run's
    inputs too), with what each of them logged (the online rule only if `serve_online`)."""
    calibrate_run = find_calibrate_run(model, calibrate_id)
    consumed = calibrate_run.data.tags
    model_step = "train" if tags.input_tag("train") in consumed else "tune"
    model_run = client.get_run(consumed[tags.input_tag(model_step)])
    runs = {
        "prepare": consumed[tags.input_tag("prepare")],
        model_step: model_run.info.run_id,
        "calibrate": calibrate_run.info.run_id,
        "export": run.info.run_id,
    }
    mlflow.set_tags({tags.input_tag(step): runs[step] for step in ("prepare", model_step)})
    trained = load_model(model_run.info.run_id, out / "model")
    calibration_path = download(runs["calibrate"], artifacts.CALIBRATION, out / "inputs")
    online = None  # export.online=false, or a calibrate run from before online calibration
    if serve_online and has_artifact(runs["calibrate"], artifacts.ONLINE_CALIBRATION):
        online_path = download(runs["calibrate"], artifacts.ONLINE_CALIBRATION, out / "inputs")
        online = ServedOnline.from_dict(json.loads(online_path.read_text()))
    prepared = load_prepared(runs["prepare"], out / "inputs")
    return ExportInputs(
        runs=runs,
        trained_at=pd.Timestamp(model_run.info.start_time, unit="ms", tz="UTC").isoformat(),
        model_metrics=dict(model_run.data.metrics),
        network=trained.fitted_network(),
        spec=trained.spec,
        processor=trained.fitted_processor().to_dict(),
        calibration=Calibration.from_json(calibration_path),
        online=online,
        dataset=prepared.dataset,
        data=trained.arrange(prepared.dataset, prepared.truth),
    )


def _log_files(out: Path, folder: Path, report_text: str, checked: parity.Parity) -> None:
    """The report, the card, metadata.json and the parity table, beside the served model."""
    (out / REPORT).write_text(report_text)
    checked.deterministic.to_csv(out / PARITY_TABLE, index=False)
    mlflow.log_artifact(str(out / REPORT))
    mlflow.log_artifact(str(folder / artifacts.CARD.name))
    mlflow.log_artifact(str(folder / artifacts.METADATA.name))
    mlflow.log_artifact(str(out / PARITY_TABLE), "report")

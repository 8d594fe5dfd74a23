"""`export`: a calibrated model as ONNX, checked, registered, and promoted if it earns it.

Reads a calibrate run (and through it the model run and the prepare run). Writes four ONNX
files (the calibrated MC graph, its ORT-optimized form, a float16 variant and the
deterministic graph), checks parity with Keras, measures the float16 error, judges the
served output (the MC graph's) on validation and test rows beside the zero predictor, writes
metadata.json and the model card, logs the export as an MLflow pyfunc model, registers a
version of `nextday-<model>`, and promotes it when the gate passes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

import nextday
from nextday.evaluation import claims
from nextday.evaluation.diebold_mariano import diebold_mariano
from nextday.evaluation.intervals import interval_metrics
from nextday.evaluation.metrics import min_symbols, point_metrics, prefixed
from nextday.export import card, gate, metadata, parity, registry
from nextday.export.files import write_onnx
from nextday.inference.checks import input_columns
from nextday.inference.model import SHA_TAG
from nextday.inference.outputs import OUT_OF_RANGE
from nextday.models.spec import model_spec
from nextday.reports import markdown
from nextday.reports.markdown import decimals_to_tell_apart
from nextday.steps.calibrate import CALIBRATION_ARTIFACT, load_model_run
from nextday.steps.inputs import load_prepared
from nextday.tracking import INPUT_TAG, artifact_dir, find_input_run, step_run

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
COPIED_PREFIXES = ("baseline_", "oracle_")


def _mc_outputs(session, x: np.ndarray, chunk: int = 4096) -> dict[str, np.ndarray]:
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    parts = [session.run(None, {name: x[i : i + chunk]}) for i in range(0, len(x), chunk)]
    return {
        n: np.concatenate([p[k] for p in parts]).astype(np.float64) for k, n in enumerate(names)
    }


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _judge(outputs: dict[str, np.ndarray], y, dates, segment: str) -> dict[str, float]:
    """The served model's metrics on one segment, beside the zero predictor."""
    out = prefixed(point_metrics(outputs["prediction"], y, dates), segment)
    out.update(prefixed(point_metrics(np.zeros_like(y), y, dates), f"baseline_zero_{segment}"))
    out.update(prefixed(interval_metrics(outputs["p10"], outputs["p90"], y, 0.8), segment))
    if segment == "test":
        for loss in ("mae", "mse"):
            result = diebold_mariano(outputs["prediction"] - y, -y, dates, loss=loss)
            out[f"dm_zero_{loss}_p"] = result.p_better
    return out


def _float16_error(folder: Path, files: dict[str, str], x: np.ndarray) -> dict[str, float]:
    """float16 vs float32 MC graph on the same rows; fresh sessions draw the same masks."""
    full = _mc_outputs(_session(folder / files["mc"]), x)
    half = _mc_outputs(_session(folder / files["mc_float16"]), x)
    scale = float(np.mean(np.abs(full["prediction"])))
    out = {"fp16_mean_abs_prediction_fp32": scale}
    for name in ("prediction", "sigma", "p10", "p90"):
        difference = np.abs(half[name] - full[name])
        out[f"fp16_max_abs_err_{name}"] = float(difference.max())
        out[f"fp16_mean_abs_err_{name}"] = float(difference.mean())
    return out


def _check_parity(keras_model, spec, folder, files, test_x, passes, seed, settings):
    """Deterministic and MC parity with Keras, and the float16 error: (the deterministic
    table, the MC result, whether MC parity holds, metrics)."""
    from nextday.export.graphs import network_of

    cases = parity.edge_cases(test_x, network_of(keras_model, spec), seed)
    table = parity.deterministic(keras_model, _session(folder / files["deterministic"]), cases)
    metrics = {
        "parity_max_abs_diff": float(table["max_abs_diff"].max()),
        "parity_test_max_abs_diff": float(table["max_abs_diff"].iloc[0]),
    }
    mc_result = parity.mc(
        keras_model,
        _session(folder / files["mc_optimized"]),
        test_x[: int(settings.mc_rows)],
        passes,
        int(settings.mc_calls),
        seed,
    )
    metrics.update(prefixed(mc_result, "parity_mc"))
    mc_ok = parity.mc_passes(
        mc_result, float(settings.mc_max_share_z_above_4), tuple(settings.mc_spread_band)
    )
    metrics.update(_float16_error(folder, files, test_x))
    return table, mc_result, mc_ok, metrics


def find_calibrate_run(model: str, run_id: str | None):
    return find_input_run(
        "calibrate",
        run_id,
        model=model,
        hint=f"run `python -m nextday calibrate model={model}` or pass "
        "inputs.calibrate_run_id=<run id>",
    )


def run_export(cfg: DictConfig) -> str:
    from nextday.models.data import arrange
    from nextday.uncertainty.calibration import Calibration

    settings = cfg.export
    name = model_spec(cfg).name
    with step_run(cfg, "export", model=name) as run, artifact_dir(cfg) as out:
        client = mlflow.MlflowClient()  # after step_run: it points MLflow at the store
        started = time.perf_counter()
        calibrate_run = find_calibrate_run(name, cfg.inputs.get("calibrate_run_id"))
        tags = calibrate_run.data.tags
        model_step = "train" if f"{INPUT_TAG}train" in tags else "tune"
        model_run = client.get_run(tags[f"{INPUT_TAG}{model_step}"])
        prepare_id = tags[f"{INPUT_TAG}prepare"]
        mlflow.set_tags(
            {f"{INPUT_TAG}{model_step}": model_run.info.run_id, f"{INPUT_TAG}prepare": prepare_id}
        )
        keras_model, spec = load_model_run(model_run, out / "model")
        calibration_path = Path(
            mlflow.artifacts.download_artifacts(
                run_id=calibrate_run.info.run_id,
                artifact_path=CALIBRATION_ARTIFACT,
                dst_path=str(out / "inputs"),
            )
        )
        calibration = Calibration.from_json(calibration_path)
        prepared = load_prepared(prepare_id, out / "inputs")
        data = arrange(spec, prepared.dataset, prepared.truth)
        registered = registry.registered_name(str(settings.registered_model_prefix), name)
        version = registry.next_version(client, registered)
        passes, seed, opset = calibration.passes, int(settings.seed), int(settings.opset)

        folder = out / "export"
        t0 = time.perf_counter()
        files = write_onnx(keras_model, spec, calibration, folder, version, passes, seed, opset)
        metrics: dict[str, float] = {"convert_seconds": time.perf_counter() - t0}

        table, mc_parity, mc_ok, parity_metrics = _check_parity(
            keras_model, spec, folder, files, data.judged["test"].x, passes, seed, settings.parity
        )
        metrics.update(parity_metrics)
        test, val = data.judged["test"], data.judged["val"]

        # the served output, judged
        session = _session(folder / files["mc_optimized"])
        outputs = {s: _mc_outputs(session, data.judged[s].x) for s in ("train", "val", "test")}
        for segment, judged in (("val", val), ("test", test)):
            metrics.update(_judge(outputs[segment], judged.y, judged.dates, segment))
        metrics.update(
            {
                k: v
                for k, v in model_run.data.metrics.items()
                if k.startswith(COPIED_PREFIXES) and "_test_" in k and k not in metrics
            }
        )
        checks = gate.acceptance_checks(
            metrics["parity_max_abs_diff"],
            float(settings.parity.tolerance),
            mc_ok,
            f"share of rows with |z| > 4: {mc_parity['share_abs_z_above_4']:.3f}, spread ratio "
            f"ONNX/Keras {mc_parity['spread_ratio']:.3f}",
            metrics["test_coverage_80"],
            tuple(settings.gate.coverage_band),
            metrics.get("dm_zero_mae_p", float("nan")),
            float(settings.gate.significance),
        )

        files["reference"] = _write_reference(
            folder, spec, data, outputs, metrics, int(cfg.monitor.drift_days)
        )
        meta = metadata.build(
            registered_model=registered,
            version=version,
            spec=spec,
            processor=_processor_dict(model_run, out),
            calibration=json.loads(calibration_path.read_text()),
            files=files,
            metrics=metrics,
            data=metadata.data_summary(prepared.dataset),
            runs={
                "prepare": prepare_id,
                model_step: model_run.info.run_id,
                "calibrate": calibrate_run.info.run_id,
                "export": run.info.run_id,
            },
            trained_at=pd.Timestamp(model_run.info.start_time, unit="ms", tz="UTC").isoformat(),
            opset=opset,
            passes=passes,
            seed=seed,
            input_columns=input_columns(spec.features, spec.input_window),
            float16_on_gpu=bool(settings.float16),
            serving=_serving(settings.serving, spec, data.train_flat),
        )
        (folder / metadata.CARD).write_text(
            card.render(
                meta,
                checks,
                run.info.run_id,
                str(cfg.data.source),
                significance=float(cfg.evaluation.significance),
            )
        )
        metadata.seal(meta, folder)

        model_info = _log_pyfunc(folder, spec, data.judged["test"].x[:5], meta)
        version_obj = mlflow.register_model(
            model_info.model_uri, registered, tags=_version_tags(meta, checks)
        )
        if int(version_obj.version) != version:  # another export registered in between
            log.warning(
                "export: files are named v%d but the registry gave version %s",
                version,
                version_obj.version,
            )
        client.update_model_version(
            registered, version_obj.version, description=(folder / metadata.CARD).read_text()
        )
        checks.append(
            _versus_production(
                client, registered, version_obj.version, spec, val, outputs, settings
            )
        )
        decision = _decide(client, registered, version_obj.version, checks, bool(settings.promote))
        metrics["gate_passed"] = float(all(c.passed for c in checks))
        metrics["export_seconds"] = time.perf_counter() - started
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.set_tags(
            {
                "nextday.registered_model": registered,
                "nextday.version": version_obj.version,
                registry.GATE_TAG: decision,
            }
        )
        report = _report(
            spec,
            registered,
            version_obj.version,
            metrics,
            table,
            mc_parity,
            checks,
            decision,
            float(cfg.evaluation.significance),
        )
        (out / "export_report.md").write_text(report)
        table.to_csv(out / "parity_deterministic.csv", index=False)
        mlflow.log_artifact(str(out / "export_report.md"))
        mlflow.log_artifact(str(folder / metadata.CARD))
        mlflow.log_artifact(str(folder / "metadata.json"))
        mlflow.log_artifact(str(out / "parity_deterministic.csv"), "report")
        log.info(
            "export %s: %s version %s (%s); test MAE %.5f vs zero %.5f, coverage %.3f -> run %s",
            name,
            registered,
            version_obj.version,
            decision,
            metrics["test_mae"],
            metrics["baseline_zero_test_mae"],
            metrics["test_coverage_80"],
            run.info.run_id,
        )
        return run.info.run_id


REFERENCE = "reference.json"


def _serving(settings, spec, train_x: np.ndarray) -> dict:
    """The serving policy (export.serving) and each feature's training range, for the
    out-of-range check of ModelInference."""
    from nextday.inference.model import RANGE_POLICIES

    policy = str(settings.out_of_range)
    if policy not in RANGE_POLICIES:
        raise ValueError(f"export.serving.out_of_range={policy!r}: one of {RANGE_POLICIES}")
    low, high = np.min(train_x, axis=0), np.max(train_x, axis=0)
    return {
        "max_rows": int(settings.max_rows),
        "out_of_range": policy,
        "range_multiple": float(settings.range_multiple),
        "ranges": {name: [float(low[i]), float(high[i])] for i, name in enumerate(spec.features)},
    }


def _write_reference(folder: Path, spec, data, outputs, metrics, drift_days: int) -> str:
    """What the monitor compares live traffic with: each feature's distribution on the
    training rows the model serves and the served prediction's on the training and
    validation rows, the PSI of every `drift_days` window of those periods (each one's
    natural spread: the validation period alone is too short to show how far a month of
    predictions strays on the same market), and the validation MAE and coverage."""
    from nextday.monitoring import drift

    train, val = data.judged["train"], data.judged["val"]

    def described(values: np.ndarray, dates: np.ndarray, seed: int = 0) -> dict:
        ref = drift.reference(values, seed=seed)
        return ref | {"window_psi": drift.window_psi(ref, values, dates, drift_days)}

    reference = {
        "features": {
            name: described(train.flat[:, i], train.dates, seed=i)
            for i, name in enumerate(spec.features)
        },
        "prediction": described(
            np.concatenate([outputs["train"]["prediction"], outputs["val"]["prediction"]]),
            np.concatenate([train.dates, val.dates]),
        ),
        "window_days": drift_days,
        "val_mae": metrics["val_mae"],
        "val_coverage_80": metrics["val_coverage_80"],
    }
    (folder / REFERENCE).write_text(json.dumps(reference))
    return REFERENCE


def _processor_dict(model_run, out: Path) -> dict:
    from nextday.steps.train import PROCESSOR_ARTIFACT

    path = mlflow.artifacts.download_artifacts(
        run_id=model_run.info.run_id,
        artifact_path=PROCESSOR_ARTIFACT,
        dst_path=str(out / "inputs"),
    )
    return json.loads(Path(path).read_text())


def _log_pyfunc(folder: Path, spec, example_x: np.ndarray, meta: dict):
    """The export folder as an MLflow pyfunc model: DataFrame in (the feature columns), the
    five outputs out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from nextday.inference import served_model
    from nextday.inference.pyfunc import EXPORT_ARTIFACT, KEY_COLUMNS

    columns = meta["input_columns"]
    # the optional keys: a request that sends them gets its predictions logged (see pyfunc)
    keys = [ColSpec("string", name, required=False) for name in KEY_COLUMNS]
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", c) for c in columns] + keys),
        outputs=Schema(
            [ColSpec("double", c) for c in meta["outputs"]] + [ColSpec("boolean", OUT_OF_RANGE)]
        ),
    )
    example = pd.DataFrame(
        np.asarray(example_x, dtype=np.float64).reshape(len(example_x), -1), columns=columns
    )
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=served_model.__file__,
        artifacts={EXPORT_ARTIFACT: str(folder)},
        # the serving code travels with the model (MLflow puts it on sys.path at load), so
        # a machine that has never seen this repository can serve the version
        code_paths=[str(Path(nextday.__file__).parent)],
        signature=signature,
        input_example=example,
        pip_requirements=served_requirements(),
    )


# what the serving path imports: nothing of the training stack (no TensorFlow, scikit-learn,
# Hydra); SQLAlchemy and the PostgreSQL driver for prediction logging
SERVED_PACKAGES = ("mlflow", "onnxruntime", "numpy", "pandas", "sqlalchemy", "psycopg2-binary")


def served_requirements() -> list[str]:
    """The served model's requirements, pinned to this environment's versions."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in SERVED_PACKAGES]


def _version_tags(meta: dict, checks) -> dict[str, str]:
    tags = {
        "nextday.model": meta["model"],
        "nextday.arch": meta["arch"],
        "nextday.features": ",".join(meta["features"]),
        "nextday.trained_at": meta["trained_at"],
        "nextday.git_commit": meta["git_commit"],
        "nextday.data": f"{meta['data']['symbols']} symbols, {meta['data']['first_date']} to {meta['data']['last_date']}",
        "nextday.mc_passes": str(meta["mc"]["passes"]),
    }
    tags.update({f"nextday.run.{k}": v for k, v in meta["runs"].items()})
    # what ModelInference checks every cached copy of this version against
    tags[SHA_TAG] = json.dumps(meta["sha256"], sort_keys=True)
    for key in (
        "val_mae",
        "test_mae",
        "test_rmse",
        "test_r2",
        "test_dir_acc",
        "test_ic",
        "test_skill",
        "test_coverage_80",
        "test_width_80",
        "baseline_zero_test_mae",
        "dm_zero_mae_p",
        "parity_max_abs_diff",
    ):
        if key in meta["metrics"]:
            tags[f"metric.{key}"] = f"{meta['metrics'][key]:.6g}"
    tags.update(
        {f"nextday.check.{c.name}": ("pass: " if c.passed else "fail: ") + c.detail for c in checks}
    )
    return tags


def _versus_production(client, registered, version, spec, val, outputs, settings) -> gate.Check:
    """The production version's validation MAE on the new version's validation rows."""
    from nextday.inference.model import ModelInference

    current = registry.version_by_alias(client, registered, registry.PRODUCTION)
    if current is None or str(current.version) == str(version):
        return gate.versus_production(0.0, None, None, 0.0)
    production = ModelInference(f"models:/{registered}/{current.version}", device="cpu")
    new_mae = float(np.mean(np.abs(outputs["val"]["prediction"] - val.y)))
    production_mae = None
    if production.features == list(spec.features) and production.window == spec.input_window:
        predicted = production.run(np.asarray(val.x, dtype=np.float32))["prediction"]
        production_mae = float(np.mean(np.abs(predicted - val.y)))
    return gate.versus_production(
        new_mae, production_mae, current.version, float(settings.gate.max_val_mae_increase)
    )


def _decide(client, registered: str, version: str, checks, promote: bool) -> str:
    """Promote when every check passed (and promotion is on); else mark a challenger."""
    failed = [f"{c.name} ({c.detail})" for c in checks if not c.passed]
    if failed:
        registry.mark_challenger(client, registered, version, failed)
        log.warning(
            "export: %s version %s stays a challenger: %s", registered, version, "; ".join(failed)
        )
        return "challenger: " + "; ".join(c.name for c in checks if not c.passed)
    client.set_model_version_tag(registered, version, registry.GATE_TAG, "passed")
    if not promote:
        return "passed, not promoted (export.promote=false)"
    registry.promote(client, registered, version, "passed the export gate")
    return "production"


def _report(
    spec, registered, version, metrics, deterministic, mc_parity, checks, decision, significance
) -> str:
    compared = ("test_mae", "baseline_zero_test_mae", "val_mae", "baseline_zero_val_mae")
    decimals = decimals_to_tell_apart([100 * metrics[k] for k in compared if k in metrics])

    def pct(key: str) -> str:
        return f"{100 * metrics[key]:.{decimals}f}%" if key in metrics else "n/a"

    lines = [
        f"# Export report: {registered} version {version} ({spec.arch}, {spec.name})",
        "",
        f"**Decision: {decision}.**",
        "",
        "## Acceptance checks",
        "",
        *[f"- {'PASS' if c.passed else 'FAIL'} `{c.name}`: {c.detail}" for c in checks],
        "",
        "## The served output (ONNX MC mean and calibrated interval) beside the zero predictor",
        "",
        f"- Test MAE {pct('test_mae')} vs zero {pct('baseline_zero_test_mae')}; IC "
        + (
            f"{metrics['test_ic']:.4f}"
            if "test_ic" in metrics
            else f"undefined (fewer than evaluation.min_symbols={min_symbols()} symbols a date)"
        )
        + "; direction accuracy "
        f"{metrics.get('test_dir_acc', float('nan')):.3f}.",
        "- "
        + claims.versus("the zero predictor", metrics.get("dm_zero_mae_p"), significance)
        + " on test.",
        f"- Validation MAE {pct('val_mae')} vs zero {pct('baseline_zero_val_mae')}.",
        f"- Test coverage of the 80% interval {metrics['test_coverage_80']:.3f}, width "
        f"{metrics['test_width_80']:.5f}.",
        "",
        "## Parity: deterministic ONNX graph vs Keras (dropout off)",
        "",
        markdown.table(deterministic),
        "",
        "## Parity: MC graph vs Keras MC dropout (statistical)",
        "",
        markdown.table(pd.DataFrame([mc_parity])),
        "",
        "## float16 variant vs float32 (MC graph, same masks)",
        "",
        markdown.table(
            pd.DataFrame(
                [{k.removeprefix("fp16_"): v for k, v in metrics.items() if k.startswith("fp16_")}]
            )
        ),
        "",
        "float16 is built for GPUs; ModelInference runs float32 on the CPU.",
    ]
    return "\n".join(lines) + "\n"

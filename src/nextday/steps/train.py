"""`train`: fit one model (normal or earnings, mlp or lstm) and judge it honestly.

The run (tags nextday.step=train, nextday.model) logs per-epoch loss and val_loss, the model's
metrics per segment beside the baselines and the oracle, Diebold-Mariano tests against the
zero predictor and the best baseline, the seed's MAE targets beside the zero predictor's MAE,
permutation importance, plots, a validation report, the feature processor (JSON), the best
checkpoint, and the model as an MLflow model with a signature and an input example.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from nextday.evaluation import claims, plots
from nextday.evaluation.evaluate import MODEL, ORACLE, comparison_table, evaluate, significance
from nextday.evaluation.importance import permutation_importance
from nextday.evaluation.metrics import ic_undefined_reason
from nextday.models.spec import ModelSpec, check_dataset_columns, model_spec
from nextday.reports import markdown
from nextday.reports.markdown import decimals_to_tell_apart
from nextday.steps.inputs import load_prepared, prepared_spec
from nextday.tracking import STEP_TAG, artifact_dir, find_input_run, step_run

log = logging.getLogger(__name__)

PROCESSOR_ARTIFACT = "model_files/processor.json"
SPEC_ARTIFACT = "model_files/spec.json"
CHECKPOINT_ARTIFACT = "model_files/best.keras"


@dataclass
class Trained:
    """A fitted model with everything evaluation needs (used by train and tune alike)."""

    spec: ModelSpec
    model: object
    processor: object
    data: object
    fit: object
    baselines: object


def fit_model(
    spec: ModelSpec,
    dataset,
    truth,
    cfg: DictConfig,
    folder: Path,
    on_epoch=None,
    make_callbacks=None,
    baselines: bool = True,
) -> Trained:
    """Scale, build, (transfer,) fit, and fit the baselines on the same rows (unless told not
    to: tuning trials judge the network alone). `make_callbacks(data)` returns extra Keras
    callbacks that may need the arranged data (tune's pruning)."""
    from nextday.models.baselines import Baselines
    from nextday.models.data import arrange
    from nextday.models.networks import build_network
    from nextday.models.processor import FeatureProcessor
    from nextday.models.training import fit, seed_everything

    check_dataset_columns(spec, dataset.columns)
    data = arrange(spec, dataset, truth)
    processor = FeatureProcessor.fit(
        spec.features, data.train_flat, data.train.y, spec.clip_quantile, spec.scaling
    )
    seed_everything(spec.seed, bool(cfg.train.deterministic))
    model = build_network(spec, processor)
    source = cfg.model.get("transfer_from")
    if source:
        _transfer(model, spec, str(source), folder)
    result = fit(
        model,
        spec,
        data.train,
        data.val,
        checkpoint=folder / "best.keras",
        on_epoch=on_epoch,
        steps_per_execution=int(cfg.train.steps_per_execution),
        callbacks=make_callbacks(data) if make_callbacks else None,
    )
    fitted = None
    if baselines:
        fitted = Baselines.from_config(processor, cfg.train.baselines, spec.seed).fit(
            data.train_flat,
            data.train.y.astype(np.float64),
            data.train.weight,
            data.train_dates,
            data.train_judged,
        )
    return Trained(spec, model, processor, data, result, fitted)


def _transfer(model, spec: ModelSpec, source: str, folder: Path) -> None:
    """Start from a trained normal model's weights (`latest` or a train run id)."""
    import keras

    from nextday.models.networks import Winsorize, transfer_weights

    if source == "latest":
        query = (
            f"tags.`{STEP_TAG}` = 'train' and tags.`nextday.model` = 'normal' "
            f"and attributes.status = 'FINISHED' and params.`arch.name` = '{spec.arch}'"
        )
        runs = mlflow.search_runs(
            [mlflow.active_run().info.experiment_id],
            query,
            order_by=["start_time DESC"],
            max_results=1,
        )
        if runs.empty:
            raise LookupError(
                f"model.transfer_from=latest: no finished normal {spec.arch} train run"
            )
        source = runs.iloc[0]["run_id"]
    path = mlflow.artifacts.download_artifacts(
        run_id=source, artifact_path=CHECKPOINT_ARTIFACT, dst_path=str(folder / "transfer")
    )
    trained = keras.models.load_model(path, custom_objects={"Winsorize": Winsorize})
    source_spec = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=source, artifact_path=SPEC_ARTIFACT, dst_path=str(folder / "transfer")
            )
        ).read_text()
    )
    copied = transfer_weights(trained, model, source_spec["features"], spec.features)
    mlflow.set_tag("nextday.transfer_from", source)
    log.info("train: %d layers start from run %s", copied, source)


def forecasts_on(trained: Trained, segment: str) -> dict[str, np.ndarray]:
    """Model, baselines and (where known) the oracle on the rows a segment is judged on."""
    from nextday.models.baselines import BASELINES
    from nextday.models.training import predict

    judged = trained.data.judged[segment]
    out = {MODEL: predict(trained.model, judged.x)}
    for name in BASELINES:
        out[name] = trained.baselines.predict(name, judged.flat.astype(np.float64))
    if "true_mean" in judged.rows and judged.rows["true_mean"].notna().all():
        out[ORACLE] = judged.rows["true_mean"].to_numpy(dtype=np.float64)
    return out


def best_baseline(val_forecasts: dict[str, np.ndarray], actual) -> str:
    """The non-trivial baseline with the lowest validation MAE."""
    candidates = {n: np.mean(np.abs(val_forecasts[n] - actual)) for n in ("mean", "linear", "tree")}
    return min(candidates, key=candidates.get)


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


def train_and_log(cfg: DictConfig, spec: ModelSpec, prepared, out: Path) -> dict[str, float]:
    """Fit, judge and log into the active run: metrics, per-epoch losses, report, model."""
    mlflow.set_tag("nextday.arch", spec.arch)

    def on_epoch(epoch: int, logs: dict) -> None:
        mlflow.log_metrics(
            {k: float(v) for k, v in logs.items() if k in ("loss", "val_loss")}, step=epoch
        )

    trained = fit_model(spec, prepared.dataset, prepared.truth, cfg, out, on_epoch=on_epoch)
    metrics, report = judge(trained, cfg, out)
    mlflow.log_metrics(metrics)
    _log_model(trained, out)
    (out / "validation_report.md").write_text(report)
    mlflow.log_artifacts(str(out / "report"), "report")
    mlflow.log_artifact(str(out / "validation_report.md"))
    return metrics


def judge(trained: Trained, cfg: DictConfig, out: Path) -> tuple[dict[str, float], str]:
    """Every metric of the run, plots and the validation report (shared with tune)."""
    spec, fit = trained.spec, trained.fit
    folder = out / "report"
    folder.mkdir(exist_ok=True)
    metrics: dict[str, float] = {
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch + 1,
        "best_val_loss": min(fit.history["val_loss"]),
        "train_rows": len(trained.data.train),
        "rows_without_window": trained.data.dropped_without_window,
        "baseline_linear_alpha": trained.baselines.ridge_alpha_,
    }
    tables, forecasts = {}, {}
    for segment in ("val", "test"):
        judged = trained.data.judged[segment]
        if len(judged.rows) == 0:
            continue
        forecasts[segment] = forecasts_on(trained, segment)
        metrics.update(evaluate(forecasts[segment], judged.y, judged.dates, segment))
        metrics[f"{segment}_rows_judged"] = len(judged.rows)
        tables[segment] = comparison_table(forecasts[segment], judged.y, judged.dates)
    best = best_baseline(forecasts["val"], trained.data.judged["val"].y)
    test = trained.data.judged["test"]
    dm = significance(forecasts["test"], test.y, test.dates, {"zero": "zero", "best": best})
    metrics.update(dm)
    mlflow.set_tag("nextday.best_baseline", best)

    target = float(cfg.train.targets.get(f"{spec.name}_test_mae", np.nan))
    zero_mae = float(np.mean(np.abs(test.y)))
    if np.isfinite(target):
        metrics["target_test_mae"] = target
        metrics["target_test_mae_met"] = float(metrics["test_mae"] < target)

    importance = _importance(trained, cfg)
    for name, table in importance.items():
        table.to_csv(folder / f"importance_{name}.csv", index=False)

    plots.loss_curves(fit.history, fit.best_epoch, folder / "loss_curves.png")
    plots.predicted_vs_actual(
        forecasts["test"][MODEL],
        test.y,
        folder / "predicted_vs_actual.png",
        f"{spec.name}/{spec.arch}: predicted vs actual (test)",
    )
    plots.error_histogram(
        {"model": forecasts["test"][MODEL] - test.y, "zero": -test.y},
        folder / "error_histogram.png",
    )
    _, by_size = plots.error_by_move_size(
        {k: v for k, v in forecasts["test"].items() if k in (MODEL, "zero", best, ORACLE)},
        test.y,
        folder / "error_by_move_size.png",
    )
    _, by_month = plots.ic_by_month(
        {k: v for k, v in forecasts["test"].items() if k in (MODEL, best, ORACLE)},
        test.y,
        test.dates,
        folder / "ic_by_month.png",
    )
    ic_text = _ic_text(metrics, "test", test.dates)
    report = _report(
        spec,
        metrics,
        tables,
        dm,
        best,
        target,
        zero_mae,
        importance,
        by_size,
        by_month,
        cfg,
        ic_text,
    )
    return metrics, report


def _importance(trained: Trained, cfg: DictConfig) -> dict[str, pd.DataFrame]:
    from nextday.models.training import predict

    val = trained.data.judged["val"]
    rng = np.random.default_rng(trained.spec.seed)
    take = np.sort(
        rng.choice(
            len(val.rows), min(len(val.rows), int(cfg.train.importance.max_rows)), replace=False
        )
    )
    repeats = int(cfg.train.importance.repeats)
    args = dict(
        y=val.y[take],
        dates=val.dates[take],
        features=trained.spec.features,
        repeats=repeats,
        seed=trained.spec.seed,
    )
    return {
        "model": permutation_importance(lambda x: predict(trained.model, x), val.x[take], **args),
        "tree": permutation_importance(
            lambda x: trained.baselines.predict("tree", x.astype(np.float64)),
            val.flat[take],
            **args,
        ),
    }


def _log_model(trained: Trained, out: Path) -> None:
    import mlflow.tensorflow
    from mlflow.models import infer_signature

    files = out / "model_files"
    files.mkdir(exist_ok=True)
    trained.processor.to_json(files / Path(PROCESSOR_ARTIFACT).name)
    (files / "spec.json").write_text(json.dumps(asdict(trained.spec), indent=2))
    if trained.fit.checkpoint and trained.fit.checkpoint.exists():
        (files / "best.keras").write_bytes(trained.fit.checkpoint.read_bytes())
    mlflow.log_artifacts(str(files), "model_files")
    # a tensor signature: the feature names travel in model_files/spec.json (the
    # served, DataFrame-in model is export's ONNX one)
    example = np.asarray(trained.data.judged["test"].x[:5], dtype=np.float32)
    from nextday.models.training import predict

    signature = infer_signature(example, predict(trained.model, example).astype(np.float32))
    from nextday.models.networks import Winsorize

    mlflow.tensorflow.log_model(
        trained.model,
        name="model",
        signature=signature,
        input_example=example,
        custom_objects={"Winsorize": Winsorize},
    )


def _pct(value: float, decimals: int = 3) -> str:
    return f"{100 * value:.{decimals}f}%"


def _ic_text(metrics: dict, segment: str, dates) -> str:
    reason = ic_undefined_reason(dates)
    return reason if reason else f"{metrics.get(f'{segment}_ic', float('nan')):.4f}"


def _report(
    spec, metrics, tables, dm, best, target, zero_mae, importance, by_size, by_month, cfg, ic_text
) -> str:
    judged = {"normal": "normal days", "earnings": "earnings days", "all": "all days"}[
        spec.evaluate_rows
    ]
    test_mae = metrics["test_mae"]
    level = float(cfg.evaluation.significance)
    compared = [test_mae, zero_mae, *([target] if np.isfinite(target) else [])]
    decimals = decimals_to_tell_apart([100 * v for v in compared])
    p_zero = dm.get("dm_zero_mse_p", float("nan"))
    lines = [
        f"# Validation report: {spec.name} model ({spec.arch})",
        "",
        f"Judged on {judged}. Trained on {metrics['train_rows']:,} rows "
        f"({spec.train_rows} days, earnings weight {spec.earnings_weight:g}); "
        f"{int(metrics['epochs_run'])} epochs, best epoch {int(metrics['best_epoch'])} "
        f"(early stopping, patience {spec.patience}).",
        "",
        "## The verdict, plainly",
        "",
        f"- Test MAE {_pct(test_mae, decimals)} against {_pct(zero_mae, decimals)} for always "
        "predicting 0 "
        f"(skill {metrics.get('test_skill', float('nan')):+.4f}): "
        + claims.versus("the zero predictor", dm.get("dm_zero_mae_p"), level)
        + ".",
        "- "
        + claims.versus(f"the best baseline `{best}`", dm.get("dm_best_mae_p"), level)
        + f". Squared loss, one-sided p: {p_zero:.4g} against zero, "
        f"{dm.get('dm_best_mse_p', float('nan')):.4g} against `{best}`.",
        f"- Test IC {ic_text}"
        + (
            f"; the oracle's {metrics['oracle_test_ic']:.4f} (ratio "
            f"{metrics['test_ic'] / metrics['oracle_test_ic']:.2f}); oracle MAE "
            f"{_pct(metrics['oracle_test_mae'], decimals)}, the floor on this data."
            if "oracle_test_ic" in metrics and "test_ic" in metrics
            else "."
        ),
    ]
    if np.isfinite(target):
        lines.append(
            f"- The seed's target, test MAE < {_pct(target, decimals)}: "
            f"{'met' if test_mae < target else 'missed'} ({_pct(test_mae, decimals)}). The zero "
            f"predictor scores {_pct(zero_mae, decimals)} on the same rows, so "
            + (
                "the target is met without any skill: it says nothing about the model."
                if zero_mae < target
                else "the target does require skill."
            )
        )
    for segment, table in tables.items():
        lines += [
            "",
            f"## {segment} segment",
            "",
            markdown.table(table.rename_axis("forecast"), index=True),
        ]
    lines += [
        "",
        "## Diebold-Mariano (test, loss differences averaged per date)",
        "",
        markdown.table(pd.DataFrame({"test": list(dm), "value": list(dm.values())})),
    ]
    top = int(cfg.train.importance.top_k)
    for name, table in importance.items():
        lines += [
            "",
            f"## Permutation importance, {name} (validation, top {top})",
            "",
            markdown.table(table.head(top)),
        ]
    lines += [
        "",
        "## MAE by size of the actual move (test)",
        "",
        markdown.table(by_size, index=True),
    ]
    if not by_month.empty:
        lines += ["", "## IC by month (test)", "", markdown.table(by_month, index=True)]
    lines += ["", "## Plots", ""]
    for name in (
        "loss_curves",
        "predicted_vs_actual",
        "error_histogram",
        "error_by_move_size",
        "ic_by_month",
    ):
        lines.append(f"![{name}](report/{name}.png)")
    return "\n".join(lines) + "\n"

"""`calibrate`: MC-dropout uncertainty whose 80% interval holds 80% of outcomes.

Reads a train or tune run's model. Measures the raw MC-dropout coverage first (it is far too
low: dropout sees model uncertainty, not the return's own noise), then fits a scale model on
training rows and a split-conformal step on validation rows, and judges the result on the test
rows: coverage, width and interval score of the 80% interval, CRPS, pinball losses, a
reliability diagram, coverage by volatility bucket and by month, a constant-width interval for
comparison, the "just raise dropout" experiment, and (optionally) adaptive conformal updating.
The calibration is logged as `calibration.json`, which export puts inside the served model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from nextday.evaluation import intervals
from nextday.features import ALL_FEATURES
from nextday.models.spec import ModelSpec, model_spec
from nextday.reports import markdown
from nextday.steps.inputs import load_prepared
from nextday.steps.train import CHECKPOINT_ARTIFACT, SPEC_ARTIFACT
from nextday.tracking import INPUT_TAG, artifact_dir, find_input_run, step_run

log = logging.getLogger(__name__)

CALIBRATION_ARTIFACT = "calibration.json"
MODEL_STEPS = ("train", "tune")
MAX_SCALE_ROWS = 200_000
NOMINAL = np.round(np.arange(0.1, 1.0, 0.1), 2)


def find_model_run(model: str, run_id: str | None):
    """The model run to calibrate: `run_id`, or the newest finished train or tune run of
    `model` in this experiment that logged a model."""
    client = mlflow.MlflowClient()

    def has_model(run) -> bool:
        files = client.list_artifacts(run.info.run_id, "model_files")
        return any(f.path == CHECKPOINT_ARTIFACT for f in files)

    return find_input_run(
        MODEL_STEPS,
        run_id,
        model=model,
        accept=has_model,
        hint=f"run `python -m nextday train model={model}` or pass inputs.model_run_id=<run id>",
    )


def load_model_run(run, folder: Path):
    """The trained Keras model (best weights) and the spec it was trained with."""
    import keras

    from nextday.models.networks import Winsorize

    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="model_files", dst_path=str(folder)
    )
    spec = json.loads((Path(path) / Path(SPEC_ARTIFACT).name).read_text())
    spec = ModelSpec.from_dict(spec)
    checkpoint = Path(path) / Path(CHECKPOINT_ARTIFACT).name
    return keras.models.load_model(checkpoint, custom_objects={"Winsorize": Winsorize}), spec


def scale_feature_names(spec: ModelSpec, settings) -> list[str]:
    """The scale model's features for `spec` (the earnings model adds its own)."""
    names = list(settings.scale_features)
    if spec.name == "earnings":
        names += list(settings.scale_features_earnings)
    unknown = [f for f in names if f not in ALL_FEATURES]
    if unknown:
        raise ValueError(f"calibrate.scale_features {unknown} are not features")
    # a feature prepare dropped as degenerate on this data carries no scale information
    dropped = [f for f in names if f not in spec.features]
    if dropped:
        log.warning("calibrate: scale features %s are not inputs of this model: left out", dropped)
    kept = [f for f in names if f in spec.features]
    if not kept:
        raise ValueError(
            f"none of calibrate.scale_features {names} is an input of the {spec.name} model"
        )
    return kept


def run_calibrate(cfg: DictConfig) -> str:
    from nextday.models.data import arrange
    from nextday.uncertainty.calibration import adaptive_coverage, calibrate
    from nextday.uncertainty.mc_dropout import mc_samples

    name = model_spec(cfg).name
    settings = cfg.calibrate
    with step_run(cfg, "calibrate", model=name) as run, artifact_dir(cfg) as out:
        model_run = find_model_run(name, cfg.inputs.get("model_run_id"))
        prepare_id = model_run.data.tags[f"{INPUT_TAG}prepare"]
        mlflow.set_tag(f"{INPUT_TAG}prepare", prepare_id)
        prepared = load_prepared(prepare_id, out / "inputs")
        model, spec = load_model_run(model_run, out / "model")
        data = arrange(spec, prepared.dataset, prepared.truth)
        scale_names = scale_feature_names(spec, settings)
        columns = [spec.features.index(f) for f in scale_names]
        vol_column = spec.features.index("vol_20d")
        passes, seed, level = int(settings.passes), int(settings.seed), float(settings.level)

        mc = {}
        for segment in ("train", "val", "test"):
            judged = data.judged[segment]
            rows = np.arange(len(judged.rows))
            if segment == "train" and len(rows) > MAX_SCALE_ROWS:
                rows = np.sort(
                    np.random.default_rng(seed).choice(rows, MAX_SCALE_ROWS, replace=False)
                )
            samples = mc_samples(model, judged.x[rows], passes, seed)
            mc[segment] = {
                "rows": rows,
                "samples": samples,
                "mean": samples.mean(axis=0),
                "sd": samples.std(axis=0),
                "y": judged.y[rows],
                "scale_x": judged.flat[rows][:, columns],
                "dates": judged.dates[rows],
                "x": judged.x[rows],
                "vol": judged.flat[rows][:, vol_column],
                "frame": judged.rows.iloc[rows].reset_index(drop=True),
            }
        train, val, test = mc["train"], mc["val"], mc["test"]
        calibration = calibrate(
            scale_names,
            (train["scale_x"], train["sd"], train["y"] - train["mean"]),
            (val["scale_x"], val["sd"], val["mean"], val["y"]),
            grid=int(settings.quantile_grid),
            passes=passes,
        )
        calibration.to_json(out / CALIBRATION_ARTIFACT)

        metrics: dict[str, float] = {
            "passes": passes,
            "calibration_rows": calibration.n_calibration,
        }
        tables: dict[str, pd.DataFrame] = {}
        for segment, part in (("val", val), ("test", test)):
            raw_low, raw_high = np.quantile(
                part["samples"], [(1 - level) / 2, (1 + level) / 2], axis=0
            )
            metrics.update(
                _prefixed(
                    intervals.interval_metrics(raw_low, raw_high, part["y"], level),
                    f"raw_{segment}",
                )
            )
            scale = calibration.scale(part["scale_x"], part["sd"])
            part["scale"] = scale
            low, high = calibration.interval(part["mean"], scale, level)
            part["low"], part["high"] = low, high
            metrics.update(
                _prefixed(intervals.interval_metrics(low, high, part["y"], level), segment)
            )
            quantiles = calibration.quantile_forecasts(part["mean"], scale)
            metrics[f"{segment}_crps"] = intervals.crps_from_quantiles(
                quantiles, np.array(calibration.levels), part["y"]
            )
            for tau in (0.1, 0.5, 0.9):
                forecast = part["mean"] + scale * calibration.quantile(tau)
                metrics[f"{segment}_pinball_{round(tau * 100)}"] = intervals.pinball(
                    forecast, part["y"], tau
                )
            metrics[f"{segment}_mc_sd_mean"] = float(part["sd"].mean())
            metrics[f"{segment}_sigma_mean"] = float((scale * calibration.sigma_factor).mean())
            tables[f"reliability_{segment}"] = _reliability(part, calibration)

        # a constant-width interval: calibrated on validation, and the width that would give
        # the same test coverage as ours (hindsight): ours should be narrower
        half = float(np.quantile(np.abs(val["y"] - val["mean"]), level, method="higher"))
        metrics.update(
            _prefixed(
                intervals.interval_metrics(
                    test["mean"] - half, test["mean"] + half, test["y"], level
                ),
                "const_test",
            )
        )
        same = float(
            np.quantile(
                np.abs(test["y"] - test["mean"]), metrics[f"test_coverage_{round(level * 100)}"]
            )
        )
        metrics[f"const_same_coverage_test_width_{round(level * 100)}"] = 2 * same

        tables["coverage_by_volatility"] = _by_bucket(test)
        tables["coverage_by_month"] = _by_month(test, "low", "high")
        if settings.adaptive.enabled:
            low, high, alpha = adaptive_coverage(
                test["mean"],
                test["scale"],
                test["y"],
                test["dates"],
                calibration,
                level,
                float(settings.adaptive.step),
            )
            metrics.update(
                _prefixed(intervals.interval_metrics(low, high, test["y"], level), "aci_test")
            )
            adaptive = {"low": low, "high": high, "y": test["y"], "dates": test["dates"]}
            tables["coverage_by_month"] = (
                tables["coverage_by_month"]
                .join(
                    _by_month(adaptive, "low", "high").rename(
                        columns={"coverage": "aci_coverage", "rows": "aci_rows"}
                    )
                )
                .drop(columns="aci_rows")
            )
        tables["dropout_experiment"] = _dropout_experiment(
            model, val, settings, level, passes, seed
        )
        metrics = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        mlflow.log_metrics(metrics)
        _plots_and_report(out, spec, metrics, tables, level)
        mlflow.log_artifact(str(out / CALIBRATION_ARTIFACT))
        mlflow.log_artifacts(str(out / "report"), "report")
        mlflow.log_artifact(str(out / "calibration_report.md"))
        tag = round(level * 100)
        log.info(
            "calibrate %s: raw MC test coverage %.3f -> calibrated %.3f (width %.4f) -> run %s",
            spec.name,
            metrics[f"raw_test_coverage_{tag}"],
            metrics[f"test_coverage_{tag}"],
            metrics[f"test_width_{tag}"],
            run.info.run_id,
        )
        return run.info.run_id


def _prefixed(values: dict[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in values.items()}


def _reliability(part: dict, calibration) -> pd.DataFrame:
    observed = []
    for nominal in NOMINAL:
        low, high = calibration.interval(part["mean"], part["scale"], nominal)
        observed.append(intervals.coverage(low, high, part["y"]))
    return pd.DataFrame({"nominal": NOMINAL, "observed": observed})


def _by_bucket(part: dict) -> pd.DataFrame:
    """Coverage and width by quintile of trailing 20-day volatility."""
    bucket = pd.qcut(part["vol"], 5, labels=["1 calm", "2", "3", "4", "5 wild"], duplicates="drop")
    inside = (part["low"] <= part["y"]) & (part["y"] <= part["high"])
    frame = pd.DataFrame({"bucket": bucket, "inside": inside, "width": part["high"] - part["low"]})
    return frame.groupby("bucket", observed=True).agg(
        coverage=("inside", "mean"), width=("width", "mean"), rows=("inside", "size")
    )


def _by_month(part: dict, low: str, high: str) -> pd.DataFrame:
    inside = (part[low] <= part["y"]) & (part["y"] <= part[high])
    months = pd.to_datetime(pd.Series(part["dates"])).dt.to_period("M").astype(str)
    return (
        pd.DataFrame({"month": months, "inside": inside})
        .groupby("month")
        .agg(coverage=("inside", "mean"), rows=("inside", "size"))
    )


def _dropout_experiment(
    model, val: dict, settings, level: float, passes: int, seed: int
) -> pd.DataFrame:
    """Raw MC coverage and width at a few inference-time dropout rates (the seed's idea)."""
    from nextday.uncertainty.mc_dropout import mc_samples, with_dropout_rate

    rows = []
    for rate in settings.dropout_experiment:
        with with_dropout_rate(model, float(rate)):
            samples = mc_samples(model, val["x"], passes, seed)
        low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
        rows.append(
            {
                "dropout": float(rate),
                **intervals.interval_metrics(low, high, val["y"], level),
                "mae_of_mc_mean": float(np.mean(np.abs(samples.mean(axis=0) - val["y"]))),
            }
        )
    return pd.DataFrame(rows)


def _plots_and_report(
    out: Path, spec: ModelSpec, metrics: dict, tables: dict, level: float
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = out / "report"
    folder.mkdir(exist_ok=True)
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for segment in ("val", "test"):
        table = tables[f"reliability_{segment}"]
        axis.plot(table["nominal"], table["observed"], marker="o", label=segment)
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    axis.set(
        xlabel="nominal coverage of the central interval",
        ylabel="observed coverage",
        title=f"Reliability: {spec.name} model",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "reliability.png", dpi=110)
    plt.close(figure)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv")

    tag = round(level * 100)
    lines = [
        f"# Calibration report: {spec.name} model ({spec.arch})",
        "",
        f"MC dropout with {int(metrics['passes'])} passes; scale model on training rows; split "
        f"conformal on {int(metrics['calibration_rows']):,} validation rows.",
        "",
        "## Headline (test)",
        "",
        f"- Raw MC-dropout {tag}% interval: coverage {metrics[f'raw_test_coverage_{tag}']:.3f}, "
        f"width {metrics[f'raw_test_width_{tag}']:.5f}. Dropout measures model uncertainty only; a "
        "daily return's own noise is far larger.",
        f"- Calibrated: coverage {metrics[f'test_coverage_{tag}']:.3f}, width "
        f"{metrics[f'test_width_{tag}']:.5f}, interval score {metrics[f'test_interval_score_{tag}']:.5f}, "
        f"CRPS {metrics['test_crps']:.5f}.",
        f"- Constant width calibrated on validation: coverage {metrics[f'const_test_coverage_{tag}']:.3f}, "
        f"width {metrics[f'const_test_width_{tag}']:.5f}, interval score "
        f"{metrics[f'const_test_interval_score_{tag}']:.5f}; a constant interval with our test "
        f"coverage would be {metrics[f'const_same_coverage_test_width_{tag}']:.5f} wide.",
    ]
    if f"aci_test_coverage_{tag}" in metrics:
        lines.append(
            f"- Adaptive conformal on the test days: coverage {metrics[f'aci_test_coverage_{tag}']:.3f}, "
            f"width {metrics[f'aci_test_width_{tag}']:.5f}."
        )
    lines += [
        "",
        "## Pinball losses and CRPS",
        "",
        markdown.table(
            pd.DataFrame(
                {
                    "metric": [k for k in metrics if "pinball" in k or "crps" in k],
                    "value": [v for k, v in metrics.items() if "pinball" in k or "crps" in k],
                }
            )
        ),
    ]
    for name, title in (
        ("reliability_val", "Reliability (validation)"),
        ("reliability_test", "Reliability (test)"),
        ("coverage_by_volatility", "Coverage by 20-day volatility quintile (test)"),
        ("coverage_by_month", "Coverage by month (test)"),
        ("dropout_experiment", "Raising inference dropout instead (raw MC interval, validation)"),
    ):
        lines += [
            "",
            f"## {title}",
            "",
            markdown.table(tables[name], index=name.startswith("coverage")),
        ]
    lines += ["", "![reliability](report/reliability.png)"]
    (out / "calibration_report.md").write_text("\n".join(lines) + "\n")

"""Judge a trained model honestly: beside the baselines and the oracle, with significance
tests, the seed's MAE target beside the zero predictor's, permutation importance and plots.

train and tune's retrained best model are judged here; `validation_report.render` words the
result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.contracts import metrics as metric_names
from nextday.contracts import pictures
from nextday.evaluation import plots
from nextday.evaluation.evaluate import MODEL, ORACLE, comparison_table, evaluate, significance
from nextday.evaluation.importance import permutation_importance
from nextday.evaluation.metrics import ic_undefined_reason
from nextday.models.baselines import BASELINES, Baselines
from nextday.models.model import NextdayModel

NON_TRIVIAL_BASELINES = ("mean", "linear", "tree")


@dataclass(frozen=True)
class JudgingSettings:
    """What train.targets, train.importance and evaluation.significance say."""

    target_test_mae: float  # the seed's target for this model (NaN: none)
    importance_rows: int
    importance_repeats: int
    importance_top_k: int
    significance: float

    @classmethod
    def from_config(cls, cfg: Mapping, model_name: str) -> JudgingSettings:
        train, importance = cfg["train"], cfg["train"]["importance"]
        return cls(
            target_test_mae=float(train["targets"].get(f"{model_name}_test_mae", np.nan)),
            importance_rows=int(importance["max_rows"]),
            importance_repeats=int(importance["repeats"]),
            importance_top_k=int(importance["top_k"]),
            significance=float(cfg["evaluation"]["significance"]),
        )


@dataclass
class Judgement:
    """Everything the validation report says, and the run's metrics."""

    metrics: dict[str, float]
    tables: dict[str, pd.DataFrame]  # per segment: one row per forecast
    dm: dict[str, float]
    best_baseline: str
    zero_test_mae: float
    ic_text: str  # the test IC, or why it is undefined
    importance: dict[str, pd.DataFrame] = field(default_factory=dict)
    by_size: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_month: pd.DataFrame = field(default_factory=pd.DataFrame)


def forecasts_on(model: NextdayModel, baselines: Baselines, segment: str) -> dict[str, np.ndarray]:
    """Model, baselines and (where known) the oracle on the rows a segment is judged on."""
    judged = model.fitted_data().judged[segment]
    out = {MODEL: model.predict(judged.x)}
    for name in BASELINES:
        out[name] = baselines.predict(name, judged.flat.astype(np.float64))
    if "true_mean" in judged.rows and judged.rows["true_mean"].notna().all():
        out[ORACLE] = judged.rows["true_mean"].to_numpy(dtype=np.float64)
    return out


def best_baseline(val_forecasts: dict[str, np.ndarray], actual) -> str:
    """The non-trivial baseline with the lowest validation MAE."""
    candidates = {n: np.mean(np.abs(val_forecasts[n] - actual)) for n in NON_TRIVIAL_BASELINES}
    return min(candidates, key=candidates.__getitem__)


def judge(
    model: NextdayModel, baselines: Baselines, settings: JudgingSettings, folder: Path
) -> Judgement:
    """Every metric of a train run, and its plots under `folder`."""
    data, history = model.fitted_data(), model.fitted_history()
    folder.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {
        "epochs_run": history.epochs_run,
        "best_epoch": history.best_epoch + 1,
        "best_val_loss": min(history.history["val_loss"]),
        metric_names.segment_rows("train"): len(data.train),
        "rows_without_window": data.dropped_without_window,
        "baseline_linear_alpha": baselines.ridge_alpha_,
    }
    tables, forecasts = {}, {}
    for segment in ("val", "test"):
        judged = data.judged[segment]
        if len(judged.rows) == 0:
            continue
        forecasts[segment] = forecasts_on(model, baselines, segment)
        metrics.update(evaluate(forecasts[segment], judged.y, judged.dates, segment))
        metrics[f"{segment}_rows_judged"] = len(judged.rows)
        tables[segment] = comparison_table(forecasts[segment], judged.y, judged.dates)
    best = best_baseline(forecasts["val"], data.judged["val"].y)
    test = data.judged["test"]
    dm = significance(forecasts["test"], test.y, test.dates, {"zero": "zero", "best": best})
    metrics.update(dm)
    if np.isfinite(settings.target_test_mae):
        metrics["target_test_mae"] = settings.target_test_mae
        test_mae = metrics[metric_names.point("test", "mae")]
        metrics["target_test_mae_met"] = float(test_mae < settings.target_test_mae)
    importance = permutation_importances(model, baselines, settings)
    for name, table in importance.items():
        table.to_csv(folder / f"importance_{name}.csv", index=False)
    by_size, by_month = _plots(model, forecasts["test"], best, folder)
    reason = ic_undefined_reason(test.dates)
    return Judgement(
        metrics=metrics,
        tables=tables,
        dm=dm,
        best_baseline=best,
        zero_test_mae=float(np.mean(np.abs(test.y))),
        ic_text=reason
        or f"{metric_names.read_optional(metrics, metric_names.point('test', 'ic')):.4f}",
        importance=importance,
        by_size=by_size,
        by_month=by_month,
    )


def permutation_importances(
    model: NextdayModel, baselines: Baselines, settings: JudgingSettings
) -> dict[str, pd.DataFrame]:
    """Permutation importance of the model and of the tree baseline on validation rows."""
    val = model.fitted_data().judged["val"]
    rng = np.random.default_rng(model.spec.seed)
    take = np.sort(
        rng.choice(len(val.rows), min(len(val.rows), settings.importance_rows), replace=False)
    )
    importance = partial(
        permutation_importance,
        y=val.y[take],
        dates=val.dates[take],
        features=model.spec.features,
        repeats=settings.importance_repeats,
        seed=model.spec.seed,
    )
    return {
        "model": importance(model.predict, val.x[take]),
        "tree": importance(
            lambda x: baselines.predict("tree", x.astype(np.float64)), val.flat[take]
        ),
    }


def _plots(
    model: NextdayModel, test_forecasts: dict[str, np.ndarray], best: str, folder: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report's plots; returns the MAE-by-move-size and IC-by-month tables."""
    spec, history = model.spec, model.fitted_history()
    test = model.fitted_data().judged["test"]
    plots.loss_curves(history.history, history.best_epoch, folder / pictures.LOSS_CURVES.name)
    plots.predicted_vs_actual(
        test_forecasts[MODEL],
        test.y,
        folder / pictures.PREDICTED_VS_ACTUAL.name,
        f"{spec.name}/{spec.arch}: predicted vs actual (test)",
    )
    plots.error_histogram(
        {"model": test_forecasts[MODEL] - test.y, "zero": -test.y},
        folder / pictures.ERROR_HISTOGRAM.name,
    )
    _, by_size = plots.error_by_move_size(
        {k: v for k, v in test_forecasts.items() if k in (MODEL, "zero", best, ORACLE)},
        test.y,
        folder / pictures.ERROR_BY_MOVE_SIZE.name,
    )
    _, by_month = plots.ic_by_month(
        {k: v for k, v in test_forecasts.items() if k in (MODEL, best, ORACLE)},
        test.y,
        test.dates,
        folder / pictures.IC_BY_MONTH.name,
    )
    return by_size, by_month

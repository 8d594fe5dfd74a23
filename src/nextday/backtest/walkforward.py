"""Predictions over the backtest period, made day by day in date order.

- fixed: one exported model (ONNX, as served) answers each day's cross-section;
- refit: every `refit_every` trading days a new model is fitted on an expanding window that
  ends an embargo before the fold, with its own feature processor (inside the network) and
  its own calibration (validation = the window's last part), then predicts the fold's days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.backtest.guard import check_window
from nextday.backtest.settings import BacktestSettings
from nextday.contracts.outputs import OUTPUTS
from nextday.timing import Progress, stage
from nextday.uncertainty.calibration import (
    Calibration,
    CalibrationSettings,
    own_features,
    scale_columns,
)


@dataclass
class WalkForward:
    rows: pd.DataFrame  # symbol, date, label, is_earnings, ... and the five outputs, fold
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # baseline name -> forecast
    folds: pd.DataFrame | None = None


def by_day(
    x: np.ndarray, dates: np.ndarray, answer, announce: str | None = None
) -> dict[str, np.ndarray]:
    """Call `answer(x of one date)` for each date in order; outputs in the rows' order. With
    `announce` (a step's name), how many days are done is logged every few seconds."""
    order = np.argsort(dates, kind="stable")
    boundaries = np.flatnonzero(np.r_[True, dates[order][1:] != dates[order][:-1], True])
    out = {name: np.empty(len(x)) for name in OUTPUTS}
    progress = Progress(announce, "days", len(boundaries) - 1) if announce else None
    for start, end in zip(boundaries[:-1], boundaries[1:], strict=True):
        rows = order[start:end]
        answered = answer(x[rows])
        for name in OUTPUTS:
            out[name][rows] = answered[name]
        if progress is not None:
            progress.advance()
    return out


def period_segment(data, segments: list[str]):
    """The judged rows (and inputs) of the backtest segments, concatenated in date order."""
    parts = [data.judged[s] for s in segments if len(data.judged[s].rows)]
    rows = pd.concat([p.rows for p in parts], ignore_index=True)
    x = np.concatenate([p.x for p in parts])
    flat = np.concatenate([p.flat for p in parts])
    return rows, x, flat


def period_dates(dataset: pd.DataFrame, segments) -> np.ndarray:
    """The sorted dates of the backtest segments; refused when they hold none."""
    period = np.sort(dataset.loc[dataset["split"].isin(list(segments)), "date"].unique())
    if len(period) == 0:
        raise ValueError(f"backtest.segments={list(segments)} hold no dates")
    return period


def fixed(
    inference, spec, dataset: pd.DataFrame, truth, settings: BacktestSettings, baselines_config
) -> WalkForward:
    """The exported model, as served, answers each day of the period; the linear and tree
    baselines' signals come from the model's own training rows and feature processor."""
    from nextday.models.baselines import Baselines
    from nextday.models.data import arrange
    from nextday.models.processor import FeatureProcessor

    train_end = dataset.loc[dataset["split"] == "train", "date"].max()
    what = f"{inference.name} version {inference.version} (trained on the train segment)"
    check_window(train_end, period_dates(dataset, settings.segments)[0], what)
    seconds: dict[str, float] = {}  # said in the log; the step times the whole
    with stage("backtest", "arrange the rows", seconds):
        data = arrange(spec, dataset, truth)
    processor = FeatureProcessor.from_dict(inference.metadata.processor)
    with stage("backtest", "fit the linear and tree baselines", seconds):
        baselines = Baselines.from_config(processor, baselines_config, spec.seed).fit_model_rows(
            data, settings.max_baseline_rows
        )
    rows, x, flat = period_segment(data, list(settings.segments))
    outputs = by_day(x.astype(np.float32), rows["date"].to_numpy(), inference.run, "backtest")
    rows = rows.assign(**outputs, fold=0)
    signals = {
        name: baselines.predict(name, flat.astype(np.float64)) for name in ("linear", "tree")
    }
    return WalkForward(rows, signals)


def _relabel(dataset: pd.DataFrame, fold_dates, embargo: int, val_fraction: float) -> pd.Series:
    """train / val / test for one fold: test = the fold's dates; the window before it, minus
    `embargo` dates, is split in time into train and (its last part) val, with an embargo."""
    dates = np.sort(dataset["date"].unique())
    first = fold_dates[0]
    history = dates[dates < first]
    history = history[: max(0, len(history) - embargo)]
    n_val = max(1, int(round(len(history) * val_fraction)))
    val = history[-n_val:]
    train = history[: max(0, len(history) - n_val - embargo)]
    split = pd.Series("none", index=dataset.index, dtype=object)
    split[dataset["date"].isin(train)] = "train"
    split[dataset["date"].isin(val)] = "val"
    split[dataset["date"].isin(fold_dates)] = "test"
    return split


def refit(
    spec, cfg, dataset: pd.DataFrame, truth, period_dates, folder: Path, start_from=None
) -> WalkForward:
    """Refit the model, its baselines and its calibration on an expanding window before each
    fold of `backtest.refit_every` days; each fold is predicted by the model as deployed:
    MC draws turned into the five outputs by `Calibration.apply`. `start_from`: a trained
    model each fold's network starts from (model.transfer_from)."""
    from nextday.models.baselines import Baselines
    from nextday.models.model import NextdayModel

    settings = cfg.backtest
    every, embargo = int(settings.refit_every), int(cfg.split.embargo_days)
    calibrating = CalibrationSettings.from_config(cfg.calibrate, spec)
    parts, folds = [], []
    signals: dict[str, list[np.ndarray]] = {"linear": [], "tree": []}
    starts = range(0, len(period_dates), every)
    progress = Progress("backtest", "refit folds", len(starts), every_seconds=0)  # each fold
    for number, start in enumerate(starts):
        fold_dates = period_dates[start : start + every]
        relabelled = dataset.assign(
            split=_relabel(dataset, fold_dates, embargo, float(settings.refit_val_fraction))
        )
        relabelled = relabelled[relabelled["split"] != "none"]
        fitted_until = relabelled.loc[relabelled["split"] != "test", "date"].max()
        check_window(fitted_until, fold_dates[0], f"refit {number}")
        model = NextdayModel.from_config(spec, cfg.train).fit(
            relabelled,
            truth,
            checkpoint=folder / f"fold_{number}" / "best.keras",
            start_from=start_from,
        )
        data = model.fitted_data()
        baselines = Baselines.from_config(
            model.fitted_processor(), cfg.train.baselines, spec.seed
        ).fit_model_rows(data)
        calibration = Calibration.fit(model, data, calibrating)
        columns = scale_columns(spec.features, calibration.scale_features)

        def answer(x, model=model, calibration=calibration, columns=columns):
            samples = model.sample(x, calibrating.passes, calibrating.seed)
            return calibration.apply(samples, own_features(x)[:, columns])

        test = data.judged["test"]
        outputs = by_day(test.x, test.rows["date"].to_numpy(), answer)
        parts.append(test.rows.assign(**outputs, fold=number))
        for name in signals:
            signals[name].append(baselines.predict(name, test.flat.astype(np.float64)))
        folds.append(
            {
                "fold": number,
                "first_date": pd.Timestamp(fold_dates[0]).date(),
                "last_date": pd.Timestamp(fold_dates[-1]).date(),
                "fitted_until": pd.Timestamp(fitted_until).date(),
                "train_rows": len(data.train),
                "epochs": model.fitted_history().epochs_run,
            }
        )
        fold = folds[-1]
        progress.advance(
            detail=f"fold {number}: {fold['first_date']}.., fitted until {fold['fitted_until']}"
        )
    rows = pd.concat(parts, ignore_index=True)
    return WalkForward(
        rows, {k: np.concatenate(v) for k, v in signals.items()}, pd.DataFrame(folds)
    )

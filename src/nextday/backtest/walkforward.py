"""Predictions over the backtest period, made day by day in date order.

- fixed: one exported model (ONNX, as served) answers each day's cross-section;
- refit: every `refit_every` trading days a new model is fitted on an expanding window that
  ends an embargo before the fold, with its own feature processor (inside the network) and
  its own calibration (validation = the window's last part), then predicts the fold's days.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nextday.backtest.guard import check_window
from nextday.inference.outputs import OUTPUTS
from nextday.uncertainty.calibration import calibrate

log = logging.getLogger(__name__)
MAX_CALIBRATION_ROWS = 50_000  # per segment, for each fold's scale model and conformal step


@dataclass
class WalkForward:
    rows: pd.DataFrame  # symbol, date, label, is_earnings, ... and the five outputs, fold
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # baseline name -> forecast
    folds: pd.DataFrame | None = None


def by_day(x: np.ndarray, dates: np.ndarray, answer) -> dict[str, np.ndarray]:
    """Call `answer(x of one date)` for each date in order; outputs in the rows' order."""
    order = np.argsort(dates, kind="stable")
    boundaries = np.flatnonzero(np.r_[True, dates[order][1:] != dates[order][:-1], True])
    out = {name: np.empty(len(x)) for name in OUTPUTS}
    for start, end in zip(boundaries[:-1], boundaries[1:], strict=True):
        rows = order[start:end]
        answered = answer(x[rows])
        for name in OUTPUTS:
            out[name][rows] = answered[name]
    return out


def period_segment(data, segments: list[str]):
    """The judged rows (and inputs) of the backtest segments, concatenated in date order."""
    parts = [data.judged[s] for s in segments if len(data.judged[s].rows)]
    rows = pd.concat([p.rows for p in parts], ignore_index=True)
    x = np.concatenate([p.x for p in parts])
    flat = np.concatenate([p.flat for p in parts])
    return rows, x, flat


def fixed(inference, data, segments: list[str], baselines) -> WalkForward:
    rows, x, flat = period_segment(data, segments)
    outputs = by_day(x.astype(np.float32), rows["date"].to_numpy(), inference.run)
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


def refit(spec, cfg, dataset: pd.DataFrame, truth, period_dates, folder: Path) -> WalkForward:
    from nextday.steps.calibrate import scale_feature_names
    from nextday.steps.train import fit_model
    from nextday.uncertainty.mc_dropout import mc_samples

    settings = cfg.backtest
    every, embargo = int(settings.refit_every), int(cfg.split.embargo_days)
    passes, seed = int(cfg.calibrate.passes), int(cfg.calibrate.seed)
    names = scale_feature_names(spec, cfg.calibrate)
    columns = [spec.features.index(f) for f in names]
    parts, signals, folds = [], {"linear": [], "tree": []}, []
    for number, start in enumerate(range(0, len(period_dates), every)):
        fold_dates = period_dates[start : start + every]
        relabelled = dataset.assign(
            split=_relabel(dataset, fold_dates, embargo, float(settings.refit_val_fraction))
        )
        relabelled = relabelled[relabelled["split"] != "none"]
        fitted_until = relabelled.loc[relabelled["split"] != "test", "date"].max()
        check_window(fitted_until, fold_dates[0], f"refit {number}")
        trained = fit_model(spec, relabelled, truth, cfg, folder / f"fold_{number}")
        data = trained.data
        mc = {}  # per segment: scale features, MC s.d., MC mean, label (what calibrate takes)
        for segment in ("train", "val"):
            judged = data.judged[segment]
            take = np.arange(len(judged.rows))
            if len(take) > MAX_CALIBRATION_ROWS:
                take = np.sort(
                    np.random.default_rng(seed).choice(take, MAX_CALIBRATION_ROWS, replace=False)
                )
            samples = mc_samples(trained.model, judged.x[take], passes, seed)
            mc[segment] = {
                "scale_x": judged.flat[take][:, columns],
                "sd": samples.std(axis=0),
                "mean": samples.mean(axis=0),
                "y": judged.y[take],
            }
        train_mc, val_mc = mc["train"], mc["val"]
        calibration = calibrate(
            names,
            (train_mc["scale_x"], train_mc["sd"], train_mc["y"] - train_mc["mean"]),
            (val_mc["scale_x"], val_mc["sd"], val_mc["mean"], val_mc["y"]),
            grid=int(cfg.calibrate.quantile_grid),
            passes=passes,
        )

        def answer(x, model=trained.model, calibration=calibration):
            samples = mc_samples(model, x, passes, seed)
            mean, sd = samples.mean(axis=0), samples.std(axis=0)
            own = x[:, -1, :] if x.ndim == 3 else x
            scale = calibration.scale(own[:, columns], sd)
            return {
                "prediction": mean,
                "sigma": scale * calibration.sigma_factor,
                "p10": mean + scale * calibration.quantile(0.1),
                "p50": mean + scale * calibration.quantile(0.5),
                "p90": mean + scale * calibration.quantile(0.9),
            }

        test = data.judged["test"]
        outputs = by_day(test.x, test.rows["date"].to_numpy(), answer)
        parts.append(test.rows.assign(**outputs, fold=number))
        for name in signals:
            signals[name].append(trained.baselines.predict(name, test.flat.astype(np.float64)))
        folds.append(
            {
                "fold": number,
                "first_date": pd.Timestamp(fold_dates[0]).date(),
                "last_date": pd.Timestamp(fold_dates[-1]).date(),
                "fitted_until": pd.Timestamp(fitted_until).date(),
                "train_rows": len(data.train),
                "epochs": trained.fit.epochs_run,
            }
        )
        log.info(
            "backtest: fold %d (%s..) fitted until %s",
            number,
            folds[-1]["first_date"],
            folds[-1]["fitted_until"],
        )
    rows = pd.concat(parts, ignore_index=True)
    return WalkForward(
        rows, {k: np.concatenate(v) for k, v in signals.items()}, pd.DataFrame(folds)
    )

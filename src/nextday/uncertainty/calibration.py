"""From MC-dropout spread to intervals that hold: a scale model and a conformal step.

1. Scale: log |residual| is regressed on the logs of the return's own scale signals (trailing
   volatility, range, ...) and of the MC spread, on training rows. exp(prediction) is a
   relative scale `s` per row: large where returns are noisy, small where they are calm.
2. Conformal: on validation rows, the normalised residuals r = (y - mean) / s are collected;
   their empirical quantiles give any interval mean + s * q(level). Split conformal needs no
   normality, and coverage holds on exchangeable data up to a 1/n correction.
The result is a small JSON-able object that export puts inside the served model.

`Calibration.fit(model, data, settings)` is the one way to calibrate a model (calibrate and the
refit backtest call it; `fit_draws` is the same fit on draws already made), and
`Calibration.apply(samples, scale_x)` the one NumPy form of the calibrated predictor (the ONNX
graph's calibration is checked against it at export). Keeping the interval calibrated after the
market moves, from outcomes as they become known, is `uncertainty.online`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nextday.contracts.outputs import OUTPUTS, QUANTILE_LEVELS
from nextday.timing import Progress

if TYPE_CHECKING:
    from nextday.models.data import ModelData, Segment
    from nextday.models.model import NextdayModel
    from nextday.models.spec import ModelSpec

EPS = 1e-8


@dataclass(frozen=True)
class CalibrationSettings:
    """How a model is calibrated (the `calibrate` config group, checked against the model)."""

    scale_features: tuple[str, ...]
    passes: int
    seed: int
    grid: int
    max_scale_rows: int  # training rows drawn for the scale model (validation: every row)

    @classmethod
    def from_config(cls, settings: Mapping, spec: ModelSpec) -> CalibrationSettings:
        """`settings` is the calibrate group; the earnings model adds its own scale features,
        and a scale feature that is not an input of this model (prepare dropped it as
        degenerate on this data) is left out."""
        from nextday.features import ALL_FEATURES

        names = list(settings["scale_features"])
        if spec.name == "earnings":
            names += list(settings["scale_features_earnings"])
        unknown = [f for f in names if f not in ALL_FEATURES]
        if unknown:
            raise ValueError(f"calibrate.scale_features {unknown} are not features")
        dropped = [f for f in names if f not in spec.features]
        if dropped:
            import logging

            logging.getLogger(__name__).warning(
                "calibrate: scale features %s are not inputs of this model: left out", dropped
            )
        kept = tuple(f for f in names if f in spec.features)
        if not kept:
            raise ValueError(
                f"none of calibrate.scale_features {names} is an input of the {spec.name} model"
            )
        return cls(
            scale_features=kept,
            passes=int(settings["passes"]),
            seed=int(settings["seed"]),
            grid=int(settings["quantile_grid"]),
            max_scale_rows=int(settings["max_scale_rows"]),
        )


@dataclass(frozen=True)
class Draws:
    """MC-dropout draws on (some of) a segment's judged rows."""

    rows: np.ndarray  # positions in the segment
    samples: np.ndarray  # passes x rows
    y: np.ndarray
    scale_x: np.ndarray  # rows x the scale features (each row's own values)

    @property
    def mean(self) -> np.ndarray:
        return self.samples.mean(axis=0)

    @property
    def sd(self) -> np.ndarray:
        return self.samples.std(axis=0)


def own_features(x: np.ndarray) -> np.ndarray:
    """Each row's own features: the last step of a sequence model's window."""
    return x[:, -1, :] if x.ndim == 3 else x


def scale_columns(features: Sequence[str], scale_features: Sequence[str]) -> list[int]:
    missing = [f for f in scale_features if f not in features]
    if missing:
        raise ValueError(f"the calibration's scale features {missing} are not model inputs")
    return [list(features).index(f) for f in scale_features]


def draw(
    model: NextdayModel, segment: Segment, settings: CalibrationSettings, limit: int | None = None
) -> Draws:
    """`settings.passes` MC passes on the segment's rows, at most `limit` of them (a seeded
    sample, in row order). The passes say how far they are in the log at most every few
    seconds: at the seed's scale they take tens of seconds."""
    rows = np.arange(len(segment.rows))
    if limit is not None and len(rows) > limit:
        rows = np.sort(np.random.default_rng(settings.seed).choice(rows, limit, replace=False))
    columns = scale_columns(model.spec.features, settings.scale_features)
    progress = Progress("calibrate", f"MC passes on {len(rows):,} rows", settings.passes)
    samples = model.sample(segment.x[rows], settings.passes, settings.seed, progress.advance)
    return Draws(
        rows=rows, samples=samples, y=segment.y[rows], scale_x=segment.flat[rows][:, columns]
    )


def calibration_draws(
    model: NextdayModel, data: ModelData, settings: CalibrationSettings
) -> tuple[Draws, Draws]:
    """The rows a calibration is fitted on: at most `max_scale_rows` training rows (the scale
    model) and every validation row (the conformal quantiles)."""
    train = draw(model, data.judged["train"], settings, settings.max_scale_rows)
    return train, draw(model, data.judged["val"], settings)


@dataclass(frozen=True)
class Calibration:
    scale_features: tuple[str, ...]
    scale_weights: tuple[float, ...]  # intercept, one per scale feature, then the MC spread
    levels: tuple[float, ...]  # quantile levels of the normalised residual
    quantiles: tuple[float, ...]
    sigma_factor: float  # s.d. of the normalised residual: sigma = s * sigma_factor
    n_calibration: int
    passes: int

    @classmethod
    def fit(
        cls, model: NextdayModel, data: ModelData, settings: CalibrationSettings
    ) -> Calibration:
        """Calibrate `model`: MC draws on (at most `max_scale_rows`) training rows fit the
        scale, draws on every validation row fit the conformal quantiles."""
        return cls.fit_draws(*calibration_draws(model, data, settings), settings)

    @classmethod
    def fit_draws(cls, train: Draws, val: Draws, settings: CalibrationSettings) -> Calibration:
        """The same fit on draws already made (calibrate keeps them for its report)."""
        return calibrate(
            list(settings.scale_features),
            (train.scale_x, train.sd, train.y - train.mean),
            (val.scale_x, val.sd, val.mean, val.y),
            grid=settings.grid,
            passes=settings.passes,
        )

    def apply(self, samples: np.ndarray, scale_x: np.ndarray) -> dict[str, np.ndarray]:
        """The served outputs (prediction, sigma, p10, p50, p90) from MC draws (passes x rows)
        and each row's scale features: what the ONNX graph computes."""
        return self.outputs(samples.mean(axis=0), samples.std(axis=0), scale_x)

    def outputs(
        self, mean: np.ndarray, sd: np.ndarray, scale_x: np.ndarray
    ) -> dict[str, np.ndarray]:
        """`apply` from the draws' per-row mean and spread."""
        scale = self.scale(scale_x, sd)
        quantiles = {name: mean + scale * self.quantile(q) for name, q in QUANTILE_LEVELS.items()}
        out = {"prediction": mean, "sigma": scale * self.sigma_factor, **quantiles}
        return {name: out[name] for name in OUTPUTS}

    def scale(self, features: np.ndarray, mc_sd: np.ndarray) -> np.ndarray:
        """The relative scale s of each row (features: rows x scale_features)."""
        design = _design(features, mc_sd)
        return np.exp(design @ np.array(self.scale_weights))

    def quantile(self, level: float) -> float:
        return float(np.interp(level, self.levels, self.quantiles))

    def interval(
        self, mean: np.ndarray, scale: np.ndarray, level: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The central `level` interval."""
        tail = (1.0 - level) / 2.0
        return mean + scale * self.quantile(tail), mean + scale * self.quantile(1.0 - tail)

    def quantile_forecasts(self, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Every stored quantile per row (rows x levels): for CRPS and pinball losses."""
        return mean[:, None] + scale[:, None] * np.array(self.quantiles)[None, :]

    def to_dict(self) -> dict[str, Any]:
        """calibration.json's content (also metadata.json's `calibration`)."""
        return {"method": "mc_dropout+scale+split_conformal", **asdict(self)}

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def from_json(cls, path: Path) -> Calibration:
        data = json.loads(Path(path).read_text())
        data.pop("method", None)
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)


def _design(features: np.ndarray, mc_sd: np.ndarray) -> np.ndarray:
    logs = np.log(np.abs(np.asarray(features, float)) + EPS)
    return np.column_stack([np.ones(len(logs)), logs, np.log(np.asarray(mc_sd, float) + EPS)])


def fit_scale(features: np.ndarray, mc_sd: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Least squares of log |residual| on the logged scale signals (the multiplicative
    heteroskedasticity regression); returns the weights."""
    design = _design(features, mc_sd)
    target = np.log(np.abs(residual) + EPS)
    weights, *_ = np.linalg.lstsq(design, target, rcond=None)
    return weights


def conformal_quantiles(normalised: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Split-conformal quantiles of the normalised residuals: each level is pushed outwards by
    the finite-sample correction, so a central interval covers at least its level."""
    n = len(normalised)
    if n < 20:
        raise ValueError(f"conformal calibration needs at least 20 validation rows, got {n}")
    # the ceil((n+1) tau)-th order statistic above the median, the floor((n+1) tau)-th below
    adjusted = np.where(
        levels >= 0.5,
        np.minimum(1.0, np.ceil((n + 1) * levels) / n),
        np.maximum(1.0 / n, np.floor((n + 1) * levels) / n),
    )
    return np.quantile(normalised, adjusted, method="inverted_cdf")


def calibrate(
    scale_features: list[str],
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    grid: int,
    passes: int,
) -> Calibration:
    """Fit the scale on training rows (features, MC s.d., residual) and the conformal
    quantiles on validation rows (features, MC s.d., MC mean, label)."""
    weights = fit_scale(*train)
    features, mc_sd, mean, label = val
    relative = np.exp(_design(features, mc_sd) @ weights)
    normalised = (label - mean) / relative
    levels = np.linspace(0, 1, grid + 2)[1:-1]
    return Calibration(
        scale_features=tuple(scale_features),
        scale_weights=tuple(float(w) for w in weights),
        levels=tuple(float(v) for v in levels),
        quantiles=tuple(float(q) for q in conformal_quantiles(normalised, levels)),
        sigma_factor=float(np.std(normalised)),
        n_calibration=len(label),
        passes=passes,
    )

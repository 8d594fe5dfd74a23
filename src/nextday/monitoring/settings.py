"""What `monitor` and `live` read from the composed config, checked once at the boundary."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from omegaconf import DictConfig

from nextday.data.synthetic import RegimeChange


@dataclass(frozen=True)
class MonitorSettings:
    model: str | None  # a models:/ URI; None: the production version or newest export
    as_of: pd.Timestamp | None  # a replay: judge only predictions made before this date
    window_days: int  # the rolling MAE and IC look at this many dates with actuals
    coverage_days: int  # the rolling coverage, at this many
    drift_days: int  # the drift tests, at this many dates with predictions
    mae_multiple: float  # accuracy alert: rolling MAE above this x the validation MAE
    coverage_band: tuple[float, float]  # calibration alert: rolling coverage outside this
    psi_limit: float  # the least PSI limit of a feature
    window_margin: float  # times the largest PSI of a training window: a feature's limit
    ks_pvalue: float  # drift also needs a KS p-value below this
    min_rows: int  # fewer live rows than this: drift is not judged

    @classmethod
    def from_config(cls, cfg: DictConfig) -> MonitorSettings:
        settings = cfg.monitor
        low, high = settings.coverage_band
        return cls(
            model=str(settings.model) if settings.model else None,
            as_of=pd.Timestamp(str(settings.as_of)) if settings.as_of is not None else None,
            window_days=int(settings.window_days),
            coverage_days=int(settings.coverage_days),
            drift_days=int(settings.drift_days),
            mae_multiple=float(settings.mae_multiple),
            coverage_band=(float(low), float(high)),
            psi_limit=float(settings.psi_limit),
            window_margin=float(settings.window_margin),
            ks_pvalue=float(settings.ks_pvalue),
            min_rows=int(settings.min_rows),
        )


@dataclass(frozen=True)
class LiveSettings:
    model: str | None  # a models:/ or runs:/ URI; None: the production version or newest export
    days: int  # trading days simulated after the prepared market's last bar
    change: RegimeChange | None  # the planted regime change (its day counts live days)
    max_days_since_earnings: int  # features.max_days_since_earnings, to compute the features

    @classmethod
    def from_config(cls, cfg: DictConfig) -> LiveSettings:
        change = cfg.live.change
        return cls(
            model=str(cfg.live.model) if cfg.live.model else None,
            days=int(cfg.live.days),
            change=None
            if change.after_days is None
            else RegimeChange(
                day=int(change.after_days),
                regime=str(change.regime),
                vol_scale=float(change.vol_scale),
            ),
            max_days_since_earnings=int(cfg.features.max_days_since_earnings),
        )

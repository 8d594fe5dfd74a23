"""What a backtest reads from the composed config, checked once at the boundary."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

MODES = ("fixed", "refit")


@dataclass(frozen=True)
class BacktestSettings:
    model: str | None  # a models:/ or runs:/ URI; None: the production version or newest export
    mode: str  # fixed: the exported model as served | refit: refit on an expanding window
    segments: tuple[str, ...]  # the period judged
    level: float  # the central interval judged: one of inference.outputs.SERVED_LEVELS
    quantile: float  # each leg of the long-short book
    cost_bps: float  # per side, on every unit of weight traded
    execution: str  # next_open or next_close
    leak_sharpe: float  # a Sharpe above this after costs is flagged as a likely leak
    regime_window: int
    regime_threshold: float
    rolling_days: int
    guard_dates: int  # sampled dates the leak guard recomputes
    max_baseline_rows: int
    max_days_since_earnings: int  # features.max_days_since_earnings, to recompute features
    significance: float  # evaluation.significance, for the claim against the zero predictor
    write_predictions: bool  # also upsert the predictions into the store's model_predictions

    @classmethod
    def from_config(cls, cfg: DictConfig) -> BacktestSettings:
        """From the composed config (which already refused an unserved `backtest.level`)."""
        settings = cfg.backtest
        if settings.mode not in MODES:
            raise ValueError(f"backtest.mode={settings.mode!r}: expected one of {MODES}")
        return cls(
            model=str(settings.model) if settings.model else None,
            mode=str(settings.mode),
            segments=tuple(str(s) for s in settings.segments),
            level=float(settings.level),
            quantile=float(settings.quantile),
            cost_bps=float(settings.cost_bps),
            execution=str(settings.execution),
            leak_sharpe=float(settings.leak_sharpe),
            regime_window=int(settings.regime.window),
            regime_threshold=float(settings.regime.threshold),
            rolling_days=int(settings.rolling_days),
            guard_dates=int(settings.guard.dates),
            max_baseline_rows=int(settings.max_baseline_rows),
            max_days_since_earnings=int(cfg.features.max_days_since_earnings),
            significance=float(cfg.evaluation.significance),
            write_predictions=bool(settings.write_predictions),
        )

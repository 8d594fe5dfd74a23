"""What a backtest reads from the composed config, checked once at the boundary."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from nextday.backtest.costs import CostModel
from nextday.backtest.strategy import TradingRule
from nextday.config_schema import CHOICES
from nextday.uncertainty.online import OnlineSettings

MODES = CHOICES["backtest.mode"]


@dataclass(frozen=True)
class BacktestSettings:
    model: str | None  # a models:/ or runs:/ URI; None: the production version or newest export
    mode: str  # fixed: the exported model as served | refit: refit on an expanding window
    segments: tuple[str, ...]  # the period judged
    level: float  # the central interval judged: one of inference.outputs.SERVED_LEVELS
    trading: TradingRule  # the legs of the long-short book and their turnover control
    capital: float  # dollars: what the market impact of each trade scales with
    costs: CostModel
    capacity: tuple[float, ...]  # capitals of the capacity curve
    ci_level: float  # of the Sharpe ratios' confidence intervals
    block_days: int  # mean block length of the bootstrap over days
    draws: int  # bootstrap draws
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
    online: OnlineSettings  # calibrate.online: the rule the interval is replayed through

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
            trading=TradingRule(
                quantile=float(settings.quantile),
                exit_quantile=float(settings.trading.exit_quantile),
                rebalance_every=int(settings.trading.rebalance_every),
            ),
            capital=float(settings.capital),
            costs=_costs(settings.costs),
            capacity=tuple(float(c) for c in settings.capacity),
            ci_level=float(settings.sharpe_ci.level),
            block_days=int(settings.sharpe_ci.block_days),
            draws=int(settings.sharpe_ci.draws),
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
            online=_online(cfg.calibrate.online, float(settings.level)),
        )


def _costs(costs: DictConfig) -> CostModel:
    given = costs.half_spread_bps
    return CostModel(
        half_spread_bps=None if given is None else float(given),
        fallback_half_spread_bps=float(costs.fallback_half_spread_bps),
        min_half_spread_bps=float(costs.min_half_spread_bps),
        max_half_spread_bps=float(costs.max_half_spread_bps),
        spread_days=int(costs.spread_days),
        adv_days=int(costs.adv_days),
        vol_days=int(costs.vol_days),
        impact_coefficient=float(costs.impact_coefficient),
    )


def _online(online: DictConfig, level: float) -> OnlineSettings:
    found = OnlineSettings.from_config(online)
    if found.level != level:
        raise ValueError(
            f"calibrate.online.level={found.level} but backtest.level={level}: the online rule "
            "corrects the interval the backtest judges, so the two must be the same"
        )
    return found

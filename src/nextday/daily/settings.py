"""What the daily run reads from the composed config, checked once at the boundary."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from omegaconf import DictConfig

from nextday.backtest.costs import CostModel
from nextday.backtest.settings import BacktestSettings
from nextday.backtest.strategy import TradingRule
from nextday.daily.features import SESSIONS
from nextday.daily.update import RESTATED_POLICIES


@dataclass(frozen=True)
class ForecastSettings:
    as_of: pd.Timestamp | None  # None: the newest closed session
    session: str  # evening | pre_open
    catch_up: bool
    allow_stale: bool
    exchange: str
    settle_minutes: int
    overlap_days: int
    restated: str  # one of RESTATED_POLICIES
    history_days: int
    models: tuple[str, ...]
    lock_timeout_s: float
    warmup_days: int  # features.warmup_days
    max_days_since_earnings: int  # features.max_days_since_earnings
    registered_model_prefix: str  # export.registered_model_prefix
    rule: TradingRule  # backtest.quantile and backtest.trading
    capital: float  # backtest.capital
    costs: CostModel  # backtest.costs

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ForecastSettings:
        forecast = cfg.forecast
        problems = []
        if str(forecast.session) not in SESSIONS:
            problems.append(f"forecast.session={forecast.session!r} (one of {SESSIONS})")
        if str(forecast.restated) not in RESTATED_POLICIES:
            problems.append(f"forecast.restated={forecast.restated!r} (one of {RESTATED_POLICIES})")
        models = tuple(str(m) for m in forecast.models)
        unknown = [m for m in models if m not in ("normal", "earnings")]
        if unknown or not models:
            problems.append(f"forecast.models={list(models)} (normal and/or earnings)")
        for key, least in (("history_days", 80), ("overlap_days", 0), ("settle_minutes", 0)):
            if int(forecast[key]) < least:
                problems.append(f"forecast.{key}={forecast[key]} (at least {least})")
        as_of = None
        if forecast.as_of is not None:
            try:
                as_of = pd.Timestamp(str(forecast.as_of)).normalize()
            except ValueError:
                problems.append(f"forecast.as_of={forecast.as_of!r} (a date, YYYY-MM-DD)")
        if problems:
            raise ValueError("forecast: " + "; ".join(problems))
        backtest = BacktestSettings.from_config(cfg)
        return cls(
            as_of=as_of,
            session=str(forecast.session),
            catch_up=bool(forecast.catch_up),
            allow_stale=bool(forecast.allow_stale),
            exchange=str(forecast.exchange),
            settle_minutes=int(forecast.settle_minutes),
            overlap_days=int(forecast.overlap_days),
            restated=str(forecast.restated),
            history_days=int(forecast.history_days),
            models=models,
            lock_timeout_s=float(forecast.lock_timeout_s),
            warmup_days=int(cfg.features.warmup_days),
            max_days_since_earnings=int(cfg.features.max_days_since_earnings),
            registered_model_prefix=str(cfg.export.registered_model_prefix),
            rule=backtest.trading,
            capital=backtest.capital,
            costs=backtest.costs,
        )

"""A simulated live period: the built-in market continued past the data a model saw.

The monitor needs traffic to judge. On the synthetic market, `continue_market` carries the
prepared market on for some trading days (same symbols, prices continued from their last
close, optionally with a planted regime change). `live` replays the daily run (`forecast`)
over those days, one close at a time: the new bars into the store, the outcomes they complete
learnt by the online calibration, the features and the version's answers, the book.
`served_coverage` then compares the static and the served interval around the change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa
from omegaconf import OmegaConf

from nextday.data.schema import RawMarket
from nextday.data.store import Store
from nextday.data.synthetic import (
    TRADING_DAYS_PER_YEAR,
    MarketSpec,
    RegimeChange,
    generate_market,
    spec_from_config,
)
from nextday.evaluation import intervals
from nextday.features.technical import LONGEST_WINDOW
from nextday.monitoring.actuals import fill_actuals, logged_predictions
from nextday.uncertainty.stored_state import static_interval

if TYPE_CHECKING:
    from nextday.inference.model import ModelInference

SOURCE = "synthetic"  # the prepared market's bars in the store
LIVE_SOURCE = "synthetic-live"  # the live period's

# bars of history kept before the live days: the longest feature window and some margin
HISTORY_DAYS = 3 * LONGEST_WINDOW
# days simulated before the live period, so that the new stretch's volatility has settled
# (GARCH starts at its long-run level and takes a few weeks to reach its typical one)
BURN_IN = 120


def continue_market(
    spec: MarketSpec,
    history: RawMarket,
    days: int,
    change: RegimeChange | None = None,
    path_seed: int | None = None,
) -> RawMarket:
    """`days` trading days of the market `spec` describes after the last bar of `history`
    (its recent bars: at least BURN_IN days). `change.day` counts live days.

    The new stretch is drawn from `path_seed` (default: spec.seed + 1) and simulated from
    BURN_IN days before the live period, so its volatility has settled; each symbol's
    prices and volumes are then scaled to carry on from its own history (last close, mean
    volume over the burn-in days), and only the days after the history are kept.
    """
    if days < 1:
        raise ValueError(f"live.days must be at least 1, got {days}")
    bars = history.ohlcv
    last_date = pd.Timestamp(bars["ts"].max())
    overlap = pd.bdate_range(end=last_date, periods=BURN_IN)
    simulated = max(BURN_IN + days, 2 * 63)  # the generator wants at least two quarters
    live_spec = replace(
        spec,
        years=simulated / TRADING_DAYS_PER_YEAR,
        start_date=str(overlap[0].date()),
        change=None if change is None else replace(change, day=BURN_IN + change.day),
    )
    market = generate_market(live_spec, spec.seed + 1 if path_seed is None else path_seed)
    foreign = sorted(set(bars["symbol"]) - set(market.ohlcv["symbol"]))
    if foreign:
        raise ValueError(
            f"the history has symbols {foreign[:5]} that this market does not draw: another market?"
        )
    # the symbols prepare kept (its quality checks may drop some the generator draws)
    ohlcv = market.ohlcv[market.ohlcv["symbol"].isin(set(bars["symbol"]))]

    # level of each symbol: its last close and mean volume over the burn-in, history vs draw
    def levels(frame: pd.DataFrame) -> pd.DataFrame:
        recent = frame[frame["ts"].isin(overlap)].sort_values("ts").groupby("symbol")
        return pd.DataFrame({"close": recent["close"].last(), "volume": recent["volume"].mean()})

    scale = levels(bars) / levels(ohlcv)
    dates = pd.bdate_range(last_date, periods=days + 1)[1:]
    live = ohlcv[ohlcv["ts"].isin(dates)].copy()
    price = live["symbol"].map(scale["close"])
    for column in ("open", "high", "low", "close"):
        live[column] = live[column] * price
    live["volume"] = (live["volume"] * live["symbol"].map(scale["volume"])).round()
    session = pd.to_datetime(market.earnings["session_date"])
    regimes = market.regimes
    assert regimes is not None  # the synthetic market always records its regimes
    kept = session.isin(dates) & market.earnings["symbol"].isin(set(bars["symbol"]))
    return RawMarket(
        ohlcv=live.reset_index(drop=True),
        earnings=market.earnings[kept].reset_index(drop=True),
        source=LIVE_SOURCE,
        regimes=regimes[regimes["ts"].isin(dates)].reset_index(drop=True),
        symbols=market.symbols,
    )


@dataclass(frozen=True)
class LivePeriod:
    dates: pd.DatetimeIndex  # the live sessions, in order
    after: pd.Timestamp  # the last bar of the prepared market
    change: RegimeChange | None

    @property
    def change_date(self) -> pd.Timestamp | None:
        """The live date the planted change starts on (None: no change in the period)."""
        if self.change is None or self.change.day >= len(self.dates):
            return None
        return self.dates[self.change.day]

    def describe_change(self) -> str:
        when = self.change_date
        if self.change is None or when is None:
            return "none"
        return f"{self.change.regime} x{self.change.vol_scale} volatility from {when.date()}"


def prepared_market(config_yaml: str, prepare_id: str):
    """The data config a prepare run of the built-in market used (refused for another
    source): live continues that market."""
    data = OmegaConf.create(config_yaml).data
    if str(data.source) != SOURCE:
        raise ValueError(
            f"live continues the built-in synthetic market; the model was trained on "
            f"data={data.source} (prepare run {prepare_id})"
        )
    spec_from_config(data)  # a config the generator takes
    return data


def last_prepared_bar(store: Store) -> pd.Timestamp:
    with store.engine.connect() as connection:
        last = connection.execute(
            sa.text("SELECT MAX(ts) FROM ohlcv WHERE source = :source"), {"source": SOURCE}
        ).scalar()
    if last is None:
        raise ValueError(
            "the store holds no bars of the synthetic market: run "
            "`python -m nextday prepare` first (with the same store)"
        )
    return pd.Timestamp(last)


def clear(store: Store, first: pd.Timestamp, name: str) -> None:
    """The rows an earlier live period left from `first` on (its bars, reports, features,
    forecasts, books and the answers of model `name`), deleted in one transaction: the
    period is a function of the config, and a rerun replays it whole."""
    day = {"first": first.date()}
    store.delete_many(
        [
            ("ohlcv", "source = :live and ts >= :first", day | {"live": LIVE_SOURCE}),
            ("earnings", "source = :live and session_date >= :first", day | {"live": LIVE_SOURCE}),
            ("feature_history", "ts >= :first", day),
            ("model_predictions", "model_name = :name and ts >= :first", day | {"name": name}),
            ("forecasts", "as_of >= :first", day),
            ("positions", "as_of >= :first", day),
            ("forecast_runs", "as_of >= :first", day),
        ]
    )


def served_coverage(
    store: Store, model: ModelInference, period: LivePeriod, window_days: int
) -> dict[str, float]:
    """The static and the served interval's coverage and width over the live days before
    the planted change and from it on (the whole period is "before" without one), and over
    the last `window_days` days with actuals (the monitor's coverage window):
    live_static_{coverage,width}_80_{before,after,window}, and live_online_* for a version
    that serves an online calibration."""
    since = period.dates[0]
    logged = fill_actuals(store, logged_predictions(store, model.name, model.version, since=since))
    known = logged.dropna(subset=["actual"])
    static = static_interval(known)
    dates = pd.to_datetime(known["ts"])
    change = period.change_date
    last = np.sort(dates.unique())[-window_days:]
    parts = {
        "before": dates < change if change is not None else dates.notna(),
        "after": dates >= change if change is not None else dates.isna(),
        "window": dates.isin(last),
    }
    out: dict[str, float] = {}
    for part, rows in parts.items():
        if not rows.any():
            continue
        y = known.loc[rows, "actual"]
        compared = {"static": (static.loc[rows, "p10"], static.loc[rows, "p90"])}
        if model.online is not None:
            compared["online"] = (known.loc[rows, "p10"], known.loc[rows, "p90"])
        for name, (low, high) in compared.items():
            out[f"live_{name}_coverage_80_{part}"] = intervals.coverage(low, high, y)
            out[f"live_{name}_width_80_{part}"] = intervals.width(low, high)
    return out


def logged_latency_p50(store: Store, name: str, version: str, first: pd.Timestamp) -> float:
    """The median latency (ms) of the predictions of a version logged from `first` on."""
    logged = store.read(
        "model_predictions",
        "model_name = :name and model_version = :version and ts >= :first",
        {"name": name, "version": version, "first": first.date()},
    )
    return float(np.median(logged["latency_ms"]))

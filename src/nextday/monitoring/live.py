"""A simulated live period: the built-in market continued past the data a model saw.

The monitor needs traffic to judge. On the synthetic market, `continue_market` carries the
prepared market on for some trading days (same symbols, prices continued from their last
close, optionally with a planted regime change), and `live_features` computes what a live
system would have at each close: the features of the new days, from the stored history plus
the new bars, with nothing of the future. `simulate` puts them into the store as a live data
feed would, and `serve` has the model answer each new day as a service would, every answer
logged, with the daily monitor's update of the online calibration between the days;
`served_coverage` then compares the static and the served interval around the change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa
from omegaconf import OmegaConf

from nextday.data.schema import EARNINGS_COLUMNS, OHLCV_COLUMNS, RawMarket
from nextday.data.store import Store
from nextday.data.synthetic import (
    TRADING_DAYS_PER_YEAR,
    MarketSpec,
    RegimeChange,
    generate_market,
    spec_from_config,
)
from nextday.dataset.build import compute_features
from nextday.evaluation import intervals
from nextday.features import TECHNICAL_FEATURES
from nextday.features.technical import LONGEST_WINDOW
from nextday.monitoring import calibration
from nextday.monitoring.actuals import fill_actuals, logged_predictions
from nextday.monitoring.settings import LiveSettings
from nextday.uncertainty.stored_state import static_interval

if TYPE_CHECKING:
    from nextday.inference.model import ModelInference
    from nextday.monitoring.logger import PredictionLogger

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
    ohlcv = market.ohlcv
    missing = sorted(set(ohlcv["symbol"]) - set(bars["symbol"]))
    if missing:
        raise ValueError(f"the history has no bars of symbols {missing[:5]}: another market?")

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
    return RawMarket(
        ohlcv=live.reset_index(drop=True),
        earnings=market.earnings[session.isin(dates)].reset_index(drop=True),
        source=LIVE_SOURCE,
        regimes=regimes[regimes["ts"].isin(dates)].reset_index(drop=True),
        symbols=market.symbols,
    )


def live_features(
    history: RawMarket, live: RawMarket, max_days_since_earnings: int = 126
) -> pd.DataFrame:
    """Features of every live bar (symbol, ts, is_earnings, the 37 features), computed from
    the history's bars and reports and the live ones. Features at a date use only bars up to
    that close, so computing them all at once equals computing them day by day."""
    ohlcv = pd.concat([history.ohlcv, live.ohlcv], ignore_index=True)
    earnings = pd.concat([history.earnings, live.earnings], ignore_index=True)
    frame, _ = compute_features(ohlcv, earnings, max_days_since_earnings)
    dates = pd.to_datetime(live.ohlcv["ts"]).unique()
    frame = frame[frame["date"].isin(dates)]
    frame = frame[frame[TECHNICAL_FEATURES].notna().all(axis=1)]
    return frame.drop(columns=["label", "position"]).rename(columns={"date": "ts"})


@dataclass(frozen=True)
class LivePeriod:
    market: RawMarket  # the live bars and reports
    features: pd.DataFrame  # of every live bar (see `live_features`)
    after: pd.Timestamp  # the last bar of the prepared market
    change: RegimeChange | None

    @property
    def dates(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.to_datetime(self.market.ohlcv["ts"]).sort_values().unique())

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


def prepared_market(config_yaml: str, prepare_id: str) -> MarketSpec:
    """The synthetic market spec a prepare run generated, from its config.yaml."""
    data = OmegaConf.create(config_yaml).data
    if str(data.source) != SOURCE:
        raise ValueError(
            f"live continues the built-in synthetic market; the model was trained on "
            f"data={data.source} (prepare run {prepare_id})"
        )
    return spec_from_config(data)


def stored_history(store: Store) -> RawMarket:
    """The prepared market's last HISTORY_DAYS bars and all its reports, from the store."""
    with store.engine.connect() as connection:
        dates = [
            row[0]
            for row in connection.execute(
                sa.text(
                    "SELECT DISTINCT ts FROM ohlcv WHERE source = :source ORDER BY ts DESC "
                    "LIMIT :days"
                ),
                {"source": SOURCE, "days": HISTORY_DAYS},
            )
        ]
    if not dates:
        raise ValueError(
            "the store holds no bars of the synthetic market: run "
            "`python -m nextday prepare` first (with the same store)"
        )
    params = {"source": SOURCE, "first": pd.Timestamp(min(dates)).date()}
    ohlcv = store.read("ohlcv", "source = :source and ts >= :first", params)
    earnings = store.read("earnings", "source = :source", {"source": SOURCE})
    return RawMarket(ohlcv=ohlcv[OHLCV_COLUMNS], earnings=earnings[EARNINGS_COLUMNS], source=SOURCE)


def simulate(spec: MarketSpec, store: Store, settings: LiveSettings) -> LivePeriod:
    """Continue the market `spec` describes past the last bar in `store`, and put the new
    bars, reports and features into the store as a live data feed would."""
    history = stored_history(store)
    market = continue_market(spec, history, settings.days, settings.change)
    features = live_features(history, market, settings.max_days_since_earnings)
    store.upsert_many(
        {
            "ohlcv": market.ohlcv.assign(source=LIVE_SOURCE),
            "earnings": market.earnings.assign(source=LIVE_SOURCE),
            "feature_history": features,
        }
    )
    return LivePeriod(market, features, pd.Timestamp(history.ohlcv["ts"].max()), settings.change)


def require_row_model(model: ModelInference, uri: str) -> None:
    """Live serves one feature row per symbol and day: a sequence model is refused."""
    if model.window > 1:
        raise ValueError(
            f"{uri} is a sequence model: live serves one feature row per symbol and day, "
            "not the window of past rows an LSTM takes"
        )


def serve(model: ModelInference, rows: pd.DataFrame, logger: PredictionLogger, store: Store) -> int:
    """`model` answers `rows` (live features) one day at a time, every answer logged through
    `logger` as a service's would be; returns the predictions written. Any prediction the
    store did not take is an error.

    For a version with an online calibration, the daily monitor is played too: the state
    starts from the static calibration (a new deployment's), and before each day is served,
    the outcomes of the day before (known at this day's close) update it in `store`, where
    `model` (reading its state from there) finds it."""
    model.logger = logger
    calibration.restart(store, model.online, model.name, model.version)
    previous = None
    for day, features in rows.groupby("ts", sort=True):
        if previous is not None and model.online is not None:
            # the day before only: a rerun finds its own later days' rows of the last run
            yesterday = logged_predictions(
                store, model.name, model.version, as_of=pd.Timestamp(day), since=previous
            )
            known = fill_actuals(store, yesterday)
            vol = calibration.prediction_volatility(store, known)
            calibration.record(store, known, vol, model.online, model.name, model.version)
        model.predict_batch(
            features[model.features],
            keys=features[["symbol", "ts"]].rename(columns={"ts": "date"}),
        )
        logger.flush()
        previous = pd.Timestamp(day)
    logger.close()
    if logger.dropped or logger.rejected or logger.unwritten:
        raise RuntimeError(
            f"{logger.dropped} predictions dropped, {logger.rejected} refused and "
            f"{logger.unwritten} not written (see {logger.dead_letter}): the store did not "
            "take the prediction log"
        )
    return logger.written


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

"""A simulated live period: the built-in market continued past the data a model saw.

The monitor needs traffic to judge. On the synthetic market, `nextday.data.continued` carries
the prepared market on for some trading days (same symbols, prices continued from their last
close, optionally with a planted regime change). `live` replays the daily run (`forecast`)
over those days, one close at a time: the new bars into the store, the outcomes they complete
learnt by the online calibration, the features and the version's answers, the book.
`served_coverage` then compares the static and the served interval around the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa
from omegaconf import OmegaConf

from nextday.data.continued import CONTINUED_SOURCE
from nextday.data.store import Store
from nextday.data.synthetic import RegimeChange, spec_from_config
from nextday.evaluation import intervals
from nextday.monitoring.actuals import fill_actuals, logged_predictions
from nextday.uncertainty.stored_state import static_interval

if TYPE_CHECKING:
    from nextday.inference.model import ModelInference

SOURCE = "synthetic"  # the prepared market's bars in the store
LIVE_SOURCE = CONTINUED_SOURCE  # the live period's


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

"""The served interval after deployment: the online state's daily update, and the static
interval beside the online one over the monitor's coverage window.

`record` writes the actuals the monitor filled and, in the same transaction, the version's
online state (`uncertainty.stored_state`) advanced by the days whose outcomes are now known,
each day once, in order. `judge` compares, over the last `coverage_days` dates with
actuals, the static interval (the served one with its multiplier taken back out) and the one
served (`static_*` and `online_*` metrics: coverage, width, interval score), and tabulates
static, served, ACI and PID (both rules replayed over every logged day from the static
calibration, with the version's settings) by volatility quintile and by month.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from nextday.contracts.outputs import INTERVALS
from nextday.data.store import Store
from nextday.evaluation import intervals
from nextday.evaluation.intervals import interval_metrics
from nextday.evaluation.metrics import prefixed
from nextday.uncertainty.online import RULES, STATIC, VOLATILITY_FEATURE, ServedOnline
from nextday.uncertainty.replay import (
    REPLAY_COLUMNS,
    coverage_by,
    month,
    replay,
    volatility_quintile,
)
from nextday.uncertainty.stored_state import TABLE as STATE_TABLE
from nextday.uncertainty.stored_state import Advance, advance, state_rows, static_interval

ONLINE = "online"  # the interval served by a version with an online rule


def prediction_volatility(store: Store, predictions: pd.DataFrame) -> np.ndarray:
    """Each prediction's vol_20d from the store's feature_history (NaN where it has none)."""
    first = pd.Timestamp(predictions["ts"].min()).date()
    features = store.read("feature_history", "ts >= :first", {"first": first})
    key = ["symbol", "ts"]
    looked_up = predictions[key].merge(
        features[[*key, VOLATILITY_FEATURE]].drop_duplicates(key), on=key, how="left"
    )
    return looked_up[VOLATILITY_FEATURE].to_numpy(float)


def record(
    store: Store,
    predictions: pd.DataFrame,
    vol: np.ndarray,
    online: ServedOnline | None,
    name: str,
    version: str,
) -> Advance | None:
    """Write the actuals of `predictions` (filled) and, for a version with an online rule,
    its state advanced by the days it has not used yet, in one transaction: both land or
    neither. Returns the advance (None: the version serves the static interval)."""
    writes = {"model_predictions": predictions}
    advanced = None
    if online is not None:
        advanced = advance(store, predictions, vol, online, name, version)
        writes[STATE_TABLE] = state_rows(advanced.state, name, version)
    store.upsert_many(writes)
    return advanced


def restart(store: Store, online: ServedOnline | None, name: str, version: str) -> None:
    """The version's online state back to the static calibration (a new deployment's)."""
    if online is not None:
        store.upsert(STATE_TABLE, state_rows(online.start(), name, version))


@dataclass(frozen=True)
class CalibrationCheck:
    metrics: dict[str, float]  # static_*_80, online_*_80 (an online version), online_multiplier
    daily: pd.DataFrame  # per date: rolling static and served coverage, mean served multiplier
    by_volatility: pd.DataFrame  # coverage_by: static, online (served), aci, pid
    by_month: pd.DataFrame


def judge(
    predictions: pd.DataFrame, vol: np.ndarray, online: ServedOnline | None, coverage_days: int
) -> CalibrationCheck:
    """Static against served over the last `coverage_days` dates with actuals (`online_*`
    only for a version that serves an online rule), and the four intervals by group."""
    level = online.settings.level if online is not None else next(iter(INTERVALS))
    lower, upper = INTERVALS[level]
    frame = _intervals(predictions, vol, online, lower, upper)
    known = frame.dropna(subset=["actual"])
    dates = np.sort(known["date"].unique())[-coverage_days:]
    window = known[known["date"].isin(dates)]
    methods = [STATIC, *([ONLINE] if online is not None else [])]
    metrics: dict[str, float] = {}
    for method in methods:
        scores = interval_metrics(
            window[f"{method}_lower"], window[f"{method}_upper"], window["actual"], level
        )
        metrics |= prefixed(scores, method)
    if online is not None and len(window):
        metrics["online_multiplier"] = float(window["multiplier"].mean())
    compared = [*methods, *(RULES if online is not None else ())]
    known = known.assign(volatility=volatility_quintile(known["vol"]), month=month(known["date"]))
    return CalibrationCheck(
        {k: float(v) for k, v in metrics.items() if np.isfinite(v)},
        _daily(known, methods, coverage_days),
        coverage_by(known, "volatility", level, compared)
        if known["volatility"].notna().any()
        else pd.DataFrame(),
        coverage_by(known, "month", level, compared) if len(known) else pd.DataFrame(),
    )


def _intervals(
    predictions: pd.DataFrame, vol: np.ndarray, online: ServedOnline | None, lower: str, upper: str
) -> pd.DataFrame:
    """Per prediction: date, actual, vol, the served multiplier and each interval's ends."""
    static = static_interval(predictions)
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(predictions["ts"]).to_numpy(),
            "actual": pd.to_numeric(predictions["actual"]).to_numpy(float),
            "vol": vol,
            "multiplier": pd.to_numeric(predictions["online_multiplier"]).fillna(1.0).to_numpy(),
            f"{STATIC}_lower": static["p10"].to_numpy(),
            f"{STATIC}_upper": static["p90"].to_numpy(),
            f"{ONLINE}_lower": predictions[lower].to_numpy(float),
            f"{ONLINE}_upper": predictions[upper].to_numpy(float),
        }
    )
    if online is None:
        return frame
    replayed = frame[["date", "actual", "vol"]].assign(**{c: static[c].to_numpy() for c in static})
    for rule in RULES:
        settings = replace(online.settings, rule=rule)
        start = replace(online, settings=settings).start()
        run = replay(replayed[list(REPLAY_COLUMNS)], settings, start)
        frame[f"{rule}_lower"], frame[f"{rule}_upper"] = run.lower, run.upper
    return frame


def _daily(known: pd.DataFrame, methods: list[str], coverage_days: int) -> pd.DataFrame:
    """Per date: each interval's coverage over the last `coverage_days` dates, and the mean
    multiplier served."""
    inside = {
        f"{m}_coverage": intervals.inside(known[f"{m}_lower"], known[f"{m}_upper"], known["actual"])
        for m in methods
    }
    daily = known.assign(**inside).groupby("date")[[*inside, "multiplier"]].mean()
    rolling = daily[list(inside)].rolling(coverage_days, min_periods=1).mean()
    return rolling.assign(multiplier=daily["multiplier"])

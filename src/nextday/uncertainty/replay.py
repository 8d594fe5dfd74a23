"""An online rule run offline over past days: `replay` serves and updates a state day by day
over a segment (each day's interval from the state after the days before it only), and
`coverage_by` puts the static interval and each rule side by side by group (volatility
quintile, month). Calibrate, export, the backtest and the monitor's tables use it; serving
uses `uncertainty.online` alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nextday.evaluation import intervals
from nextday.uncertainty.online import RULES, STATIC, OnlineSettings, OnlineState, judgeable

REPLAY_COLUMNS = ("date", "p10", "p50", "p90", "actual", "vol")
QUINTILES = ("1 calm", "2", "3", "4", "5 wild")


@dataclass(frozen=True)
class Replay:
    """An online rule run over a segment: per row (in the frame's order) the interval served
    and its multiplier, the state after the last day, and one row per day."""

    lower: np.ndarray
    upper: np.ndarray
    multiplier: np.ndarray
    state: OnlineState
    daily: pd.DataFrame  # date, rows, static/online coverage and width, multiplier (mean)


def replay(frame: pd.DataFrame, settings: OnlineSettings, state: OnlineState) -> Replay:
    """Serve and update day by day over `frame` (REPLAY_COLUMNS: date, the static p10, p50,
    p90, the actual, the row's vol_20d): day d's interval comes from the state after the days
    before d, then day d's outcomes update it."""
    missing = [c for c in REPLAY_COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"replay needs columns {list(REPLAY_COLUMNS)}; missing {missing}")
    dates = pd.to_datetime(frame["date"]).to_numpy()
    order = np.argsort(dates, kind="stable")
    p10, p50, p90, actual, vol = (frame[c].to_numpy(dtype=float)[order] for c in REPLAY_COLUMNS[1:])
    sorted_dates = dates[order]
    cuts = np.flatnonzero(np.r_[True, sorted_dates[1:] != sorted_dates[:-1], True])
    lower, upper, multiplier = np.empty(len(order)), np.empty(len(order)), np.empty(len(order))
    known = judgeable(p10, p90, actual)  # the online interval is finite where the static one is
    for start, end in zip(cuts[:-1], cuts[1:], strict=True):
        day = slice(start, end)
        bucket = state.bucket(vol[day])
        lower[day], upper[day] = state.interval(p10[day], p50[day], p90[day], vol[day])
        multiplier[day] = np.asarray(state.multiplier)[bucket]
        seen = known[day]
        missed = ~intervals.inside(lower[day][seen], upper[day][seen], actual[day][seen])
        state = state.advance(sorted_dates[start], missed, bucket[seen], settings)
    daily = _daily(sorted_dates, p10, p90, lower, upper, actual, multiplier)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return Replay(lower[back], upper[back], multiplier[back], state, daily)


def _daily(
    dates: np.ndarray,
    p10: np.ndarray,
    p90: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    actual: np.ndarray,
    multiplier: np.ndarray,
) -> pd.DataFrame:
    """One row per day: rows with an outcome, coverage of each interval, widths, mean m."""
    known = judgeable(p10, p90, actual)
    rows = pd.DataFrame(
        {
            "date": dates,
            "known": known,
            "static_inside": intervals.inside(p10, p90, actual),
            "online_inside": intervals.inside(lower, upper, actual),
            "static_width": p90 - p10,
            "online_width": upper - lower,
            "multiplier": multiplier,
        }
    )
    judged = rows[known].groupby("date")
    out = rows.groupby("date").agg(
        rows=("known", "sum"),
        static_width=("static_width", "mean"),
        online_width=("online_width", "mean"),
        multiplier=("multiplier", "mean"),
    )
    out["static_coverage"] = judged["static_inside"].mean()
    out["online_coverage"] = judged["online_inside"].mean()
    columns = ["rows", "static_coverage", "online_coverage", "static_width", "online_width"]
    return out[[*columns, "multiplier"]].reset_index()


def volatility_quintile(vol: ArrayLike) -> pd.Categorical:
    """Each row's quintile of `vol` among the rows given ("1 calm" .. "5 wild"); ranks break
    ties, so five groups form even where many values are equal. A row without a volatility
    (none logged) is in no quintile, and so is every row where fewer than five have one."""
    ranks = pd.Series(np.asarray(vol, float)).rank(method="first")
    quintiles = pd.Series(pd.NA, index=ranks.index, dtype=pd.CategoricalDtype(QUINTILES, True))
    known = ranks.notna()
    if known.sum() >= len(QUINTILES):
        quintiles[known] = pd.qcut(ranks[known], len(QUINTILES), labels=list(QUINTILES))
    return quintiles.array


def month(dates: ArrayLike) -> np.ndarray:
    """Each row's calendar month, "YYYY-MM"."""
    return pd.to_datetime(pd.Series(np.asarray(dates))).dt.to_period("M").astype(str).to_numpy()


def coverage_by(
    frame: pd.DataFrame, group: str, level: float, methods: Sequence[str] = (STATIC, *RULES)
) -> pd.DataFrame:
    """Per value of `group`: rows, then coverage, width and interval score of each method's
    interval (`<method>_lower`, `<method>_upper` beside `actual` in `frame`), side by side."""
    missing = [f"{m}_{end}" for m in methods for end in ("lower", "upper")]
    missing = [c for c in [*missing, "actual", group] if c not in frame]
    if missing:
        raise ValueError(f"coverage_by: the frame has no column {missing}")

    def scores(rows: pd.DataFrame) -> pd.Series:
        out: dict[str, float] = {"rows": float(len(rows))}
        for m in methods:
            lower, upper, actual = rows[f"{m}_lower"], rows[f"{m}_upper"], rows["actual"]
            out[f"{m}_coverage"] = intervals.coverage(lower, upper, actual)
            out[f"{m}_width"] = intervals.width(lower, upper)
            out[f"{m}_interval_score"] = intervals.interval_score(lower, upper, actual, level)
        return pd.Series(out)

    table = frame.groupby(group, observed=True, sort=True)[frame.columns.drop(group)].apply(scores)
    return table.astype({"rows": int})

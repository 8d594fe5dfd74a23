"""The interval as served and as the online rule would have served it, day by day.

The fixed model's static interval (p10..p90) is replayed through the online calibration of
`calibrate.online` (uncertainty/online.py): each day's interval comes from a state updated
only with the outcomes of the days before it, starting from the static calibration (m = 1) on
the period's first day; with Mondrian buckets, their edges are the training rows' vol_20d
quantiles. The backtest reports both side by side (`bt_static_*`, `bt_online_*`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nextday.evaluation.intervals import interval_metrics
from nextday.evaluation.metrics import prefixed
from nextday.inference.outputs import INTERVALS
from nextday.uncertainty.online import (
    REPLAY_COLUMNS,
    OnlineSettings,
    OnlineState,
    replay,
    volatility_edges,
)

STATIC, ONLINE = "bt_static", "bt_online"


@dataclass(frozen=True)
class OnlineReplay:
    metrics: dict[str, float]  # bt_static_{coverage,width,interval_score}_80, bt_online_...
    daily: pd.DataFrame  # index date: online_coverage, online_multiplier


def online_replay(
    rows: pd.DataFrame, dataset: pd.DataFrame, settings: OnlineSettings
) -> OnlineReplay:
    """Replay `settings`' rule over the predictions `rows` (date, p10, p50, p90, label,
    vol_20d); `dataset`'s training rows set the volatility buckets' edges."""
    lower, upper = INTERVALS[settings.level]
    train = dataset.loc[dataset["split"] == "train", "vol_20d"]
    state = OnlineState.start(settings, volatility_edges(train, settings.buckets))
    frame = pd.DataFrame(
        {
            "date": rows["date"],
            "p10": rows[lower],  # the replay's names for the central interval's ends
            "p50": rows["p50"],
            "p90": rows[upper],
            "actual": rows["label"],
            "vol": rows["vol_20d"],
        }
    )
    replayed = replay(frame[list(REPLAY_COLUMNS)], settings, state)
    actual = rows["label"].to_numpy()
    metrics = prefixed(interval_metrics(rows[lower], rows[upper], actual, settings.level), STATIC)
    metrics |= prefixed(
        interval_metrics(replayed.lower, replayed.upper, actual, settings.level), ONLINE
    )
    daily = replayed.daily.set_index("date")[["online_coverage", "multiplier"]]
    return OnlineReplay(metrics, daily.rename(columns={"multiplier": "online_multiplier"}))

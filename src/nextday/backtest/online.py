"""The interval as served and as the online rule would have served it, day by day.

The model's static interval (p10..p90) is replayed through an online calibration
(uncertainty/online.py): each day's interval comes from a state updated only with the outcomes
of the days before it, starting from the static calibration (m = 1) on the period's first day.
The rule is the one the version serves (its metadata's `online`, bucket edges included) when
the backtest walks a version that has one; otherwise `calibrate.online`'s, with Mondrian
buckets' edges from the training rows' vol_20d quantiles (a static version, or refit mode,
whose models are not versions). The backtest reports both side by side (`bt_static_*`,
`bt_online_*`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nextday.contracts.outputs import INTERVALS
from nextday.evaluation.intervals import interval_metrics
from nextday.evaluation.metrics import prefixed
from nextday.uncertainty.online import (
    VOLATILITY_FEATURE,
    OnlineSettings,
    ServedOnline,
    volatility_edges,
)
from nextday.uncertainty.replay import REPLAY_COLUMNS, replay

STATIC, ONLINE = "bt_static", "bt_online"


@dataclass(frozen=True)
class OnlineReplay:
    metrics: dict[str, float]  # bt_static_{coverage,width,interval_score}_80, bt_online_...
    daily: pd.DataFrame  # index date: online_coverage, online_multiplier
    rule: str  # the rule replayed and where it came from, in words


def replayed_rule(
    served: ServedOnline | None, settings: OnlineSettings, dataset: pd.DataFrame
) -> tuple[ServedOnline, str]:
    """The version's own online rule (`served`), else `settings` (calibrate.online) with
    bucket edges from `dataset`'s training rows; and where it came from, in words."""
    if served is None:
        train = dataset.loc[dataset["split"] == "train", VOLATILITY_FEATURE]
        edges = volatility_edges(train, settings.buckets)
        return ServedOnline(settings, edges), f"{settings.rule}, calibrate.online"
    if served.settings.level != settings.level:
        raise ValueError(
            f"the version serves an online rule at level {served.settings.level}, the backtest "
            f"judges the {settings.level} interval (backtest.level): set them equal"
        )
    return served, f"{served.settings.rule}, the rule the version serves"


def online_replay(
    rows: pd.DataFrame,
    dataset: pd.DataFrame,
    settings: OnlineSettings,
    served: ServedOnline | None = None,
) -> OnlineReplay:
    """Replay the online rule (`replayed_rule`) over the predictions `rows` (date, p10, p50,
    p90, label, vol_20d)."""
    online, rule = replayed_rule(served, settings, dataset)
    settings, state = online.settings, online.start()
    lower, upper = INTERVALS[settings.level]
    frame = pd.DataFrame(
        {
            "date": rows["date"],
            "p10": rows[lower],  # the replay's names for the central interval's ends
            "p50": rows["p50"],
            "p90": rows[upper],
            "actual": rows["label"],
            "vol": rows[VOLATILITY_FEATURE],
        }
    )
    replayed = replay(frame[list(REPLAY_COLUMNS)], settings, state)
    actual = rows["label"].to_numpy()
    metrics = prefixed(interval_metrics(rows[lower], rows[upper], actual, settings.level), STATIC)
    metrics |= prefixed(
        interval_metrics(replayed.lower, replayed.upper, actual, settings.level), ONLINE
    )
    daily = replayed.daily.set_index("date")[["online_coverage", "multiplier"]]
    return OnlineReplay(metrics, daily.rename(columns={"multiplier": "online_multiplier"}), rule)

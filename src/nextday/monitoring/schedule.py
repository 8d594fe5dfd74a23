"""Whether the daily run kept up, as the monitor judges it (`nextday.daily.run.schedule`
reads it from the store)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Schedule:
    """The daily run's newest as-of day, and the sessions the store has bars of, after its
    first forecast, without an evening forecast (a run that did not happen: the cron line
    failed, or refused and nobody looked)."""

    last_forecast: pd.Timestamp
    missing: list[pd.Timestamp]

"""The online calibration state in the store: written after each day's outcomes, read by serving.

`calibration_state` holds one row per served version and volatility bucket (the multiplier,
the error sum, the days used and the last of them). `monitor` (and `live`, which plays the
daily monitor) advances it with `advance` and writes it in the same transaction as the
actuals it filled; `StoredState` is the serving side: the latest state of one version, read
at most every `ttl` seconds, the last one read kept while the database is away, and None (the
static interval) until the monitor has written one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from nextday.data.store import Store
from nextday.uncertainty.online import OnlineState, ServedOnline
from nextday.uncertainty.replay import REPLAY_COLUMNS, replay

log = logging.getLogger(__name__)

TABLE = "calibration_state"


def state_rows(state: OnlineState, name: str, version: str) -> pd.DataFrame:
    """`state` as the rows of `calibration_state` (one per bucket)."""
    buckets = len(state.multiplier)
    bounds = [None, *state.edges, None]
    return pd.DataFrame(
        {
            "model_name": name,
            "model_version": str(version),
            "bucket": np.arange(buckets),
            "rule": state.rule,
            "level": state.level,
            "vol_from": bounds[:-1],
            "vol_to": bounds[1:],
            "multiplier": state.multiplier,
            "error_sum": state.error_sum,
            "updates": state.updates,
            "through": pd.Timestamp(state.through) if state.through else pd.NaT,
            "updated_at": pd.Timestamp.now().floor("s"),
        }
    )


def read_state(store: Store, name: str, version: str) -> OnlineState | None:
    """The stored state of version `version` of `name`, or None where none is stored yet."""
    rows = store.read(
        TABLE, "model_name = :name and model_version = :version", {"name": name, "version": version}
    ).sort_values("bucket")
    if rows.empty:
        return None
    if list(rows["bucket"]) != list(range(len(rows))):
        raise ValueError(
            f"{TABLE} of {name} v{version} holds buckets {list(rows['bucket'])}, not 0..n-1"
        )
    through = pd.to_datetime(rows["through"]).max()
    return OnlineState(
        rule=str(rows["rule"].iloc[0]),
        level=float(rows["level"].iloc[0]),
        edges=tuple(float(e) for e in rows["vol_to"].iloc[:-1]),
        multiplier=tuple(float(m) for m in rows["multiplier"]),
        error_sum=tuple(float(e) for e in rows["error_sum"]),
        updates=tuple(int(u) for u in rows["updates"]),
        through=None if pd.isna(through) else through.date().isoformat(),
    )


def static_interval(predictions: pd.DataFrame) -> pd.DataFrame:
    """The static p10, p50, p90 of logged predictions: the served ones, with the online
    multiplier they carry taken back out (NULL: the static interval was served)."""
    m = pd.to_numeric(predictions["online_multiplier"]).fillna(1.0).to_numpy(float)
    p50 = predictions["p50"].to_numpy(float)
    return pd.DataFrame(
        {
            "p10": p50 - (p50 - predictions["p10"].to_numpy(float)) / m,
            "p50": p50,
            "p90": p50 + (predictions["p90"].to_numpy(float) - p50) / m,
        },
        index=predictions.index,
    )


@dataclass(frozen=True)
class Advance:
    state: OnlineState  # after the new days
    days: int  # days whose outcomes it used now
    rows: int  # their predictions with an outcome
    # of those, the ones served with another multiplier than the state gave that day (served
    # before the update landed or within serving's ttl, or while the store was away): the
    # update counts the misses of the state's interval, not of the one these were served with
    off_state: int


def advance(
    store: Store,
    predictions: pd.DataFrame,
    vol: ArrayLike,
    online: ServedOnline,
    name: str,
    version: str,
) -> Advance:
    """The stored state of the version (its start where none is stored) advanced by the
    days of `predictions` (logged, actuals filled) after the last one it used. `vol` is each
    prediction's vol_20d (NaN where unknown: the wildest bucket), in `predictions`' order.

    A day counts once it has an outcome; an outcome that arrives after its day was used
    does not move the state any more (each day updates it once, in date order)."""
    before = read_state(store, name, version) or online.start()
    known = predictions["actual"].notna().to_numpy()
    if before.through is not None:
        known = (
            known & (pd.to_datetime(predictions["ts"]) > pd.Timestamp(before.through)).to_numpy()
        )
    rows = predictions[known]
    if rows.empty:
        return Advance(before, 0, 0, 0)
    frame = static_interval(rows).assign(
        date=pd.to_datetime(rows["ts"]),
        actual=rows["actual"].astype(float),
        vol=np.asarray(vol, float)[known],
    )
    replayed = replay(frame[list(REPLAY_COLUMNS)], online.settings, before)
    served = pd.to_numeric(rows["online_multiplier"]).fillna(1.0).to_numpy(float)
    off_state = int((~np.isclose(served, replayed.multiplier, rtol=1e-9, atol=0)).sum())
    return Advance(replayed.state, len(replayed.daily), len(rows), off_state)


@dataclass(frozen=True)
class CalibrationStore:
    """Where serving reads the online state: a store URL (its password from `password_env`)
    and how long a state read is used before the store is asked again (seconds; 0: always)."""

    url: str
    ttl: float = 60.0
    password_env: str | None = None

    def reader(self, name: str, version: str, online: ServedOnline) -> StoredState:
        return StoredState(self.url, name, version, online, self.ttl, self.password_env)


READ_TIMEOUT_S = 5.0  # the longest one read of the state may wait for the database


class StoredState:
    """Serving's view of one version's online state: read from the store at most every
    `ttl` seconds (0: on every call). Until the monitor has written a state, and when the
    stored one was made for another rule, level or number of buckets than the version
    serves, the answer is None (the static interval); while the database is away the last
    state read is kept. One caller reads at a time, outside the lock: the others are
    answered with the state already held meanwhile, so a slow database slows one request
    (at most READ_TIMEOUT_S) per `ttl`, not all of them."""

    def __init__(
        self,
        store_url: str,
        name: str,
        version: str,
        online: ServedOnline,
        ttl: float = 60.0,
        password_env: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = Store(store_url, password_env=password_env, timeout_s=READ_TIMEOUT_S)
        self.name, self.version, self.online = name, str(version), online
        self.ttl, self._clock = float(ttl), clock
        self._state: OnlineState | None = None
        self._read_at: float | None = None
        self._reading = False
        self._lock = threading.Lock()

    def state(self) -> OnlineState | None:
        with self._lock:
            now, held = self._clock(), self._state
            due = self._read_at is None or now - self._read_at >= self.ttl
            if not due or self._reading:
                return held
            self._read_at, self._reading = now, True
        fresh = held
        try:
            fresh = self._read(held)
        finally:
            with self._lock:
                self._state, self._reading = fresh, False
        return fresh

    def _read(self, last: OnlineState | None) -> OnlineState | None:
        try:
            state = read_state(self.store, self.name, self.version)
        except Exception as error:  # the database away, or no table yet: keep what we have
            self.store.engine.dispose()
            log.warning(
                "online calibration of %s v%s not read from %s (%s): serving the %s",
                self.name, self.version, self.store.display_url, error,
                "last state read" if last else "static interval",
            )  # fmt: skip
            return last
        served = self.online.settings
        if state is not None and (state.rule, state.level, len(state.multiplier)) != (
            served.rule,
            served.level,
            served.buckets,
        ):
            log.warning(
                "the stored online state of %s v%s follows rule %s at %s with %d bucket(s), "
                "the version serves %s: serving the static interval",
                self.name, self.version, state.rule, state.level, len(state.multiplier),
                served.describe(),
            )  # fmt: skip
            return None
        return state

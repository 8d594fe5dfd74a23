"""One daily run (forecast or monitor) at a time on a store.

PostgreSQL: a session-level advisory lock on the store's database; SQLite: an exclusive
`flock` on a file beside the database. A second run waits up to `timeout_s` for the first,
then refuses with `StoreBusyError` before writing anything. The lock goes with the
connection or the file handle, so a run that dies releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from nextday.daily import ForecastRefused
from nextday.data.store import Store

# pg_advisory_lock's key: "nextday" as a 64-bit number, the same for every nextday process
LOCK_KEY = int.from_bytes(b"nextday\x00", "big") & 0x7FFF_FFFF_FFFF_FFFF
POLL_SECONDS = 0.5


class StoreBusyError(ForecastRefused):
    """Another daily run holds the store."""


@contextlib.contextmanager
def daily_lock(store: Store, timeout_s: float, what: str) -> Iterator[None]:
    """Hold the store's daily-run lock for `what` (e.g. "forecast 2024-05-02")."""
    if store.dialect == "postgresql":
        with _advisory(store, timeout_s, what):
            yield
    else:
        with _file_lock(store, timeout_s, what):
            yield


@contextlib.contextmanager
def _advisory(store: Store, timeout_s: float, what: str) -> Iterator[None]:
    connection = store.engine.connect()
    try:
        deadline = time.monotonic() + timeout_s
        while not connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
        ).scalar():
            if time.monotonic() >= deadline:
                raise StoreBusyError(_busy(store, timeout_s, what))
            time.sleep(POLL_SECONDS)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            connection.commit()
    finally:
        connection.close()


@contextlib.contextmanager
def _file_lock(store: Store, timeout_s: float, what: str) -> Iterator[None]:
    database = store.url.database
    path = Path(f"{database}.daily.lock") if database else Path("nextday-memory.daily.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreBusyError(_busy(store, timeout_s, what)) from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _busy(store: Store, timeout_s: float, what: str) -> str:
    return (
        f"{what}: another forecast or monitor run holds the store {store.display_url} "
        f"(waited {timeout_s:g} s, forecast.lock_timeout_s); nothing was written"
    )

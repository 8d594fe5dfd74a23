"""PredictionLogger: predictions into the store's `model_predictions`, off the request path.

`log` only appends to an in-memory buffer (microseconds); a background thread writes the
buffer in batches, each an upsert in one transaction. Two kinds of failure are told apart:

- The database is away (connection refused, dropped, locked): the rows stay in the buffer and
  are written once it is back; the buffer is bounded (`max_buffer` rows), and rows pushed out
  of a full buffer are counted in `dropped`, never lost silently.
- The database refuses a batch for its content (a symbol too long for its column, a key that
  is empty): the batch is split in halves until the bad rows are found; they go to the
  dead-letter file (JSON lines, with the database's error) and are counted in `rejected`,
  and every other row is written. One bad row never blocks the good ones.

At `close`, rows that still cannot be written go to the dead-letter file too and are counted
in `unwritten`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

log = logging.getLogger(__name__)

DEAD_LETTER_NAME = "logs/rejected_predictions.jsonl"


def default_dead_letter() -> Path:
    """Under paths.root (NEXTDAY_ROOT, else the working directory)."""
    return Path(os.environ.get("NEXTDAY_ROOT") or ".") / DEAD_LETTER_NAME


def refused_for_content(error: BaseException) -> bool:
    """True when the database refused the rows themselves (a value too long, an empty key):
    splitting the batch finds them. Anything else (the database away, a missing privilege)
    is retried later with every row kept."""
    content: tuple[type[BaseException], ...] = (
        sa.exc.DataError,
        sa.exc.IntegrityError,
        sqlite3.DataError,
        sqlite3.IntegrityError,
    )
    try:
        import psycopg2

        content += (psycopg2.DataError, psycopg2.IntegrityError)
    except ImportError:  # the SQLite-only serving image
        pass
    return isinstance(error, content)


class _NotWritten(Exception):
    """The database failed for another reason than the rows: `rest` still waits."""

    def __init__(self, rest: pd.DataFrame, cause: BaseException):
        super().__init__(str(cause))
        self.rest, self.cause = rest, cause


COLUMNS = (
    "symbol", "ts", "model_name", "model_version", "predicted", "sigma", "p10", "p50", "p90",
    "latency_ms", "online_multiplier", "created_at",
)  # fmt: skip
OPTIONAL = ("online_multiplier", "created_at")  # NULL (the static interval) and now


class PredictionLogger:
    def __init__(
        self,
        store_url: str,
        batch_rows: int = 5000,
        max_buffer: int = 200_000,
        interval: float = 1.0,
        background: bool = True,
        password_env: str | None = None,
        dead_letter: str | Path | None = None,
    ) -> None:
        from nextday.data.store import Store

        self.store = Store(store_url, password_env=password_env)
        self.dead_letter = Path(dead_letter) if dead_letter else default_dead_letter()
        self._tables_ready = False  # created at the first write (the database may be away now)
        self.batch_rows, self.max_buffer, self.interval = batch_rows, max_buffer, interval
        self.written = self.dropped = self.failures = self.rejected = self.unwritten = 0
        self._buffer: deque[pd.DataFrame] = deque()
        self._pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name="prediction-logger", daemon=True)
            self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    def log(self, frame: pd.DataFrame) -> None:
        """Queue rows (the model_predictions columns; actual and error are left empty)."""
        missing = [c for c in COLUMNS if c not in frame and c not in OPTIONAL]
        if missing:
            raise ValueError(f"prediction log rows lack columns {missing}")
        frame = frame.assign(
            created_at=frame.get("created_at", pd.Timestamp.now()),
            online_multiplier=frame.get("online_multiplier", float("nan")),
        )
        with self._lock:
            self._buffer.append(frame[list(COLUMNS)])
            self._pending += len(frame)
            self._trim()

    def _trim(self) -> None:
        while self._pending > self.max_buffer:
            oldest = self._buffer[0]
            excess = self._pending - self.max_buffer
            if len(oldest) <= excess:
                self._buffer.popleft()
                self._pending -= len(oldest)
                self.dropped += len(oldest)
            else:
                self._buffer[0] = oldest.iloc[excess:]
                self._pending -= excess
                self.dropped += excess

    def flush(self) -> int:
        """Write what is buffered, batch by batch; when the database fails for another reason
        than the rows, keep what is not written yet for the next try. Returns the rows
        written."""
        before = self.written
        while True:
            with self._lock:
                if not self._buffer:
                    return self.written - before
                batch, rows = [], 0
                while self._buffer and rows < self.batch_rows:
                    part = self._buffer.popleft()
                    batch.append(part)
                    rows += len(part)
                self._pending -= rows
            # one row per key: a re-logged prediction replaces the earlier one
            frame = pd.concat(batch, ignore_index=True).drop_duplicates(
                ["symbol", "ts", "model_name", "model_version"], keep="last"
            )
            try:
                if not self._tables_ready:
                    self.store.create()
                    self._tables_ready = True
                self._write(frame)
            except Exception as error:  # the database is away: keep what is left, try later
                rest, cause = (
                    (error.rest, error.cause) if isinstance(error, _NotWritten) else (frame, error)
                )
                with self._lock:
                    self._buffer.appendleft(rest)
                    self._pending += len(rest)
                    self._trim()
                self.failures += 1
                self.store.engine.dispose()  # no stale pooled connection after a restart
                log.warning("prediction log: %d rows kept for a retry (%s)", self._pending, cause)
                return self.written - before

    def _write(self, frame: pd.DataFrame) -> None:
        """Upsert `frame` (counted in `written`); rows the database refuses for their content
        are found by halving and dead-lettered. Any other failure raises _NotWritten with the
        rows neither written nor dead-lettered yet."""
        try:
            self.store.upsert("model_predictions", frame)
            self.written += len(frame)
            return
        except Exception as error:
            if not refused_for_content(error):
                raise _NotWritten(frame, error) from error
            if len(frame) == 1:
                self._reject(frame, error)
                return
        half = len(frame) // 2
        first, second = frame.iloc[:half], frame.iloc[half:]
        try:
            self._write(first)
        except _NotWritten as away:  # the second half was not tried: it waits too
            raise _NotWritten(pd.concat([away.rest, second]), away.cause) from away.cause
        self._write(second)

    def _reject(self, frame: pd.DataFrame, error: BaseException, counter: str = "rejected") -> None:
        """Append rows to the dead-letter file with the reason, and count them."""
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        reason = f"{type(error).__name__}: {error}".strip()
        with self.dead_letter.open("a", encoding="utf-8") as handle:
            for row in frame.to_dict("records"):
                record = {k: (None if pd.isna(v) else str(v)) for k, v in row.items()}
                handle.write(json.dumps({**record, "error": reason}) + "\n")
        setattr(self, counter, getattr(self, counter) + len(frame))
        log.warning(
            "prediction log: %d row(s) %s to %s: %s", len(frame), counter, self.dead_letter, reason
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and write what is left, retrying until `timeout` seconds (once:
        a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.flush()
            if self.pending:
                time.sleep(min(1.0, self.interval))
        if self.pending:
            with self._lock:
                left = pd.concat(list(self._buffer), ignore_index=True)
                self._buffer.clear()
                self._pending = 0
            self._reject(left, ConnectionError("database unreachable at close"), "unwritten")
        if self.rejected or self.unwritten or self.dropped:
            log.warning(
                "prediction log closed: %d written, %d rejected for their content, %d not "
                "written (database away), %d dropped from a full buffer; see %s",
                self.written, self.rejected, self.unwritten, self.dropped, self.dead_letter,
            )  # fmt: skip

"""PredictionLogger: predictions into the store's `model_predictions`, off the request path.

`log` only appends to an in-memory buffer (microseconds); a background thread writes the
buffer in batches, each an upsert in one transaction. When the database is away, the rows stay
in the buffer and are written once it is back; the buffer is bounded (`max_buffer` rows), and
rows pushed out of a full buffer are counted in `dropped`, never lost silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import pandas as pd

log = logging.getLogger(__name__)

COLUMNS = (
    "symbol", "ts", "model_name", "model_version", "predicted", "sigma", "p10", "p50", "p90",
    "latency_ms", "created_at",
)  # fmt: skip


class PredictionLogger:
    def __init__(
        self,
        store_url: str,
        batch_rows: int = 5000,
        max_buffer: int = 200_000,
        interval: float = 1.0,
        background: bool = True,
        password_env: str | None = None,
    ) -> None:
        from nextday.data.store import Store

        self.store = Store(store_url, password_env=password_env)
        self._tables_ready = False  # created at the first write (the database may be away now)
        self.batch_rows, self.max_buffer, self.interval = batch_rows, max_buffer, interval
        self.written = self.dropped = self.failures = 0
        self._buffer: deque[pd.DataFrame] = deque()
        self._pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name="prediction-logger", daemon=True)
            self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    def log(self, frame: pd.DataFrame) -> None:
        """Queue rows (the model_predictions columns; actual and error are left empty)."""
        missing = [c for c in COLUMNS if c not in frame and c != "created_at"]
        if missing:
            raise ValueError(f"prediction log rows lack columns {missing}")
        frame = frame.assign(created_at=frame.get("created_at", pd.Timestamp.now()))
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
        """Write what is buffered, batch by batch; on a database error keep the rest for the
        next try. Returns the rows written."""
        written = 0
        while True:
            with self._lock:
                if not self._buffer:
                    return written
                batch, rows = [], 0
                while self._buffer and rows < self.batch_rows:
                    part = self._buffer.popleft()
                    batch.append(part)
                    rows += len(part)
                self._pending -= rows
            try:
                # one row per key: a re-logged prediction replaces the earlier one
                frame = pd.concat(batch, ignore_index=True).drop_duplicates(
                    ["symbol", "ts", "model_name", "model_version"], keep="last"
                )
                if not self._tables_ready:
                    self.store.create()
                    self._tables_ready = True
                self.store.upsert("model_predictions", frame)
            except Exception as error:  # the database is away: keep the rows, try later
                with self._lock:
                    self._buffer.extendleft(reversed(batch))
                    self._pending += rows
                    self._trim()
                self.failures += 1
                self.store.engine.dispose()  # no stale pooled connection after a restart
                log.warning("prediction log: %d rows kept for a retry (%s)", self._pending, error)
                return written
            written += rows
            self.written += rows

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and write what is left, retrying until `timeout` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.flush()
            if self.pending:
                time.sleep(min(1.0, self.interval))
        if self.pending:
            log.warning("prediction log: %d rows not written at close", self.pending)

"""Stages of long work, timed and announced: a step says where it is and what each part took.

`stage` times a block; `Progress` says how far a loop has come, at most every few seconds, so
a long run is never silent and a log is never flooded; `interactive` says whether a person
watches (progress bars only then); `duration` writes seconds as a person reads them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def stage(step: str, name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time the block into `timings[name]`, logging its start and its duration at INFO."""
    log.info("%s: %s ...", step, name)
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    log.info("%s: %s done in %.1f s", step, name, timings[name])


def interactive() -> bool:
    """Whether a person watches the output: stdout is a terminal, and this is not CI or an
    `mlflow run` (which sets MLFLOW_RUN_ID). Progress bars are drawn only then; logs always."""
    return sys.stdout.isatty() and not os.environ.get("CI") and not os.environ.get("MLFLOW_RUN_ID")


def duration(seconds: float) -> str:
    """Seconds as a person reads them: 0.8 s, 42 s, 3 min 5 s, 1 h 20 min."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class Progress:
    """How far a loop of `total` items has come, logged at INFO at most every `every_seconds`
    and once when the last item is done: "backtest: days 120/356 (34%), 8.1 s, about 16 s
    left". The time left assumes the items still to come take as long as those done.
    `clock` is injectable (tests); it defaults to `time.monotonic`."""

    def __init__(
        self,
        step: str,
        what: str,
        total: int,
        every_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.step, self.what, self.total = step, what, int(total)
        self.every_seconds = every_seconds
        self.clock = clock
        self.done = 0
        self.started = self.last_said = clock()

    def advance(self, n: int = 1, detail: str = "") -> None:
        """Count `n` more items done; say so if the last line is `every_seconds` old or the
        loop is finished (`detail` is added to the line, e.g. which fold)."""
        self.done += n
        now = self.clock()
        finished = self.done >= self.total
        if finished or now - self.last_said >= self.every_seconds:
            self.last_said = now
            log.info("%s", self.line(now, detail))

    def line(self, now: float, detail: str = "") -> str:
        """The progress line at time `now`."""
        elapsed = now - self.started
        share = self.done / self.total if self.total else 1.0
        text = f"{self.step}: {self.what} {self.done}/{self.total} ({share:.0%}), "
        if self.done >= self.total:
            text += f"done in {duration(elapsed)}"
        else:
            left = elapsed / self.done * (self.total - self.done) if self.done else math.inf
            text += f"{duration(elapsed)}, about {duration(left)} left"
        return f"{text} ({detail})" if detail else text

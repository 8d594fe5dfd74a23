"""Stages of long work, timed and announced: a step says where it is and what each part took."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def stage(step: str, name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time the block into `timings[name]`, logging its start and its duration at INFO."""
    log.info("%s: %s ...", step, name)
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start
    log.info("%s: %s done in %.1f s", step, name, timings[name])

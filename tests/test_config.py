"""The composed config is checked before anything runs: an interval level the served answer
does not hold is refused, naming the levels it does hold."""

from __future__ import annotations

import pytest

from nextday.config import LEVEL_KEYS, UnservedLevelError, compose
from nextday.contracts.outputs import SERVED_LEVELS

UNSERVED = next(level for level in (0.9, 0.5, 0.95) if level not in SERVED_LEVELS)


@pytest.mark.parametrize("key", LEVEL_KEYS)
def test_an_unserved_interval_level_is_refused_naming_the_served_ones(key):
    with pytest.raises(UnservedLevelError, match=rf"{key}={UNSERVED} is not served") as caught:
        compose([f"{key}={UNSERVED}"])
    assert f"use one of {SERVED_LEVELS}" in str(caught.value)


def test_every_served_level_composes():
    for level in SERVED_LEVELS:
        cfg = compose([f"backtest.level={level}", f"calibrate.level={level}"])
        assert float(cfg.backtest.level) == level == float(cfg.calibrate.level)

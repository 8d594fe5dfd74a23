"""The README's walkthrough, every command of its "Walkthrough" section, run as written in an
empty folder (tests/documented.py)."""

from __future__ import annotations

import json
import re

import pytest

from documented import PROJECT, clone_in, commands, runs_of

pytestmark = pytest.mark.slow(seconds=240)


@pytest.fixture
def clone(tmp_path):
    yield from clone_in(tmp_path)


def test_the_readme_walkthrough_runs_as_written(clone):
    steps = commands((PROJECT / "README.md").read_text(), "Walkthrough")
    assert len(steps) >= 10, steps
    for command in steps:
        out = clone.run(command)
        if command.startswith("curl"):
            answer = json.loads(out)["predictions"]
            assert len(answer) == 2
            assert set(answer[0]) == {"prediction", "sigma", "p10", "p50", "p90", "out_of_range"}
            assert answer[0]["out_of_range"] is False
            assert answer[0]["p10"] <= answer[0]["p50"] <= answer[0]["p90"]

    versions = [out for command, out in clone.outputs if command.endswith("nextday versions")]
    for model in ("nextday-normal", "nextday-earnings"):
        assert re.search(rf"{model}\s+1\s+production", versions[-1]), versions[-1]
    main = runs_of(clone.folder, "main")
    assert len(main) == 2 and main["tags.nextday.reused"].iloc[0].startswith("prepare, train")
    assert len(runs_of(clone.folder, "tune")) >= 1
    monitors = runs_of(clone.folder, "monitor")
    assert monitors["tags.nextday.monitor.alerts"].iloc[-1] == "none"  # before the crash
    assert "accuracy" in monitors["tags.nextday.monitor.alerts"].iloc[0]  # after it

"""The retraining runbook, every command of docs/runbook.md, run as written in an empty folder
(tests/documented.py). Its commands get `experiment=quick`; those marked `# needs: ...` are
skipped."""

from __future__ import annotations

import re

import pytest

from documented import PROJECT, clone_in, commands

pytestmark = pytest.mark.slow(seconds=240)


@pytest.fixture
def clone(tmp_path):
    yield from clone_in(tmp_path)


def test_the_runbook_runs_as_written(clone):
    steps = commands((PROJECT / "docs" / "runbook.md").read_text())
    for command in steps:
        if "# needs:" in command:
            continue
        if "python -m nextday" in command and "experiment=" not in command:
            code, _, comment = command.partition("#")
            command = f"{code.rstrip()} experiment=quick" + (f"  #{comment}" if comment else "")
        clone.run(command)
    versions = [out for command, out in clone.outputs if "nextday versions" in command]
    # after the rollback, version 1 serves again and version 2 is archived
    assert re.search(r"nextday-normal\s+1\s+production", versions[-1]), versions[-1]
    assert re.search(r"nextday-normal\s+2\s+\S+\s+Archived", versions[-1]), versions[-1]
    assert (clone.folder / "models" / "normal" / "2" / "metadata.json").exists()

"""`make test`'s pytest-xdist flags, on a small generated project with this suite's ordering
hook: each module runs on one worker with its module fixtures built once, and the modules
marked slow start first.

pytest 9.2 broke `--dist loadgroup` silently (xdist 3.8 writes the group into `item._nodeid`,
which pytest no longer reads): every module's fixtures were built on both workers, the
pipelines twice. This test catches such a change of either package.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs pytest in a subprocess

PROJECT = Path(__file__).resolve().parents[1]

CONFTEST = """
import importlib.util
import sys

spec = importlib.util.spec_from_file_location("suite_conftest", {suite!r})
suite = sys.modules["suite_conftest"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)
pytest_collection_modifyitems = suite.pytest_collection_modifyitems
"""

MODULE = """
import os
import pytest

{mark}

@pytest.fixture(scope="module")
def built():
    with open({record!r}, "a") as record:
        record.write("fixture {name} " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")


@pytest.mark.parametrize("case", range(4))
def test_case(built, case):
    with open({record!r}, "a") as record:
        record.write("test {name} " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


def _make_test_flags() -> list[str]:
    """The pytest-xdist scheduling flags of the Makefile's `test` recipe."""
    recipe = (PROJECT / "Makefile").read_text().split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    flags = re.findall(r"--dist \S+|--no-loadscope-reorder|--maxprocesses=\S+", recipe)
    assert any(flag.startswith("--dist") for flag in flags), recipe
    return [part for flag in flags for part in flag.split()]


def test_each_module_stays_on_one_worker_and_the_slow_module_starts_first(tmp_path):
    record = tmp_path / "record.txt"
    (tmp_path / "conftest.py").write_text(
        CONFTEST.format(suite=str(PROJECT / "tests" / "conftest.py"))
    )
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    integration: x\n    slow(seconds): x\n"
        "    postgres: x\n    browser: x\n"
    )
    names = ("alpha", "beta", "gamma")  # gamma, collected last, is the slow one
    for name in names:
        mark = "pytestmark = pytest.mark.slow(seconds=99)" if name == "gamma" else ""
        (tmp_path / f"test_{name}.py").write_text(
            MODULE.format(mark=mark, name=name, record=str(record))
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            *_make_test_flags(),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line.split() for line in record.read_text().splitlines()]
    for name in names:
        builds = [worker for kind, module, worker in lines if kind == "fixture" and module == name]
        workers = {worker for kind, module, worker in lines if kind == "test" and module == name}
        assert len(builds) == 1, f"{name}'s module fixture was built on {builds}"
        assert workers == set(builds), f"{name}'s tests ran on {sorted(workers)}"
    (slow_worker,) = {worker for kind, module, worker in lines if module == "gamma"}
    first_on_that_worker = next(module for kind, module, worker in lines if worker == slow_worker)
    assert first_on_that_worker == "gamma", lines

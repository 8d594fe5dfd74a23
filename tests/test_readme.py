"""The README's walkthrough and the retraining runbook, run as written.

Every command of README.md's "Walkthrough" section and of docs/runbook.md runs with bash in an
empty folder holding only what a clone has there (MLproject, conda.yaml, the example request),
`.venv/bin` standing for this interpreter's environment. A command ending in `&` starts a
server: it runs in the background until the test ends, and the next command waits for its
port. Runbook commands get `experiment=quick`; those marked `# needs: ...` are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest

pytestmark = pytest.mark.slow(seconds=280)

PROJECT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)


def commands(markdown: str, section: str | None = None) -> list[str]:
    """The command lines of the ```bash blocks (of one `## section`), continuations joined."""
    if section is not None:
        start = markdown.index(f"## {section}\n")
        end = markdown.find("\n## ", start + 1)
        markdown = markdown[start : end if end > 0 else None]
    found = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                found.append(line.strip())
    return found


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "NEXTDAY_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _wait_for(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server on port {port} exited"
        for path in ("/ping", "/health"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        time.sleep(0.5)
    raise AssertionError(f"nothing answered on port {port} within {timeout} s")


class Shell:
    """Runs documented commands in `folder`, keeping each one's output."""

    def __init__(self, folder: Path):
        self.folder, self.env = folder, _environment()
        self.outputs: list[tuple[str, str]] = []
        self.servers: list[subprocess.Popen] = []

    def run(self, command: str) -> str:
        line = command.replace("$PWD/.venv/bin", BIN).replace(".venv/bin", BIN)
        if line.endswith("&"):
            server = subprocess.Popen(
                ["bash", "-c", line[:-1]],
                cwd=self.folder,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.servers.append(server)
            _wait_for(int(re.search(r"-p (\d+)", line).group(1)), server)
            return ""
        result = subprocess.run(
            ["bash", "-c", line],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"`{command}` failed:\n{result.stderr[-4000:]}"
        self.outputs.append((command, result.stdout))
        return result.stdout

    def stop(self) -> None:
        for server in self.servers:
            try:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def clone(tmp_path):
    for name in ("MLproject", "conda.yaml"):
        shutil.copy(PROJECT / name, tmp_path / name)
    (tmp_path / "docs" / "examples").mkdir(parents=True)
    for example in (PROJECT / "docs" / "examples").iterdir():
        shutil.copy(example, tmp_path / "docs" / "examples" / example.name)
    shell = Shell(tmp_path)
    yield shell
    shell.stop()


def _runs(folder: Path, step: str):
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    return mlflow.search_runs(
        experiment_names=["nextday"],
        filter_string=f"tags.`nextday.step` = '{step}'",
        order_by=["attributes.start_time DESC"],
    )


# each its own xdist group: the two take minutes and share nothing (the walkthrough alone
# serves on ports 5000 and 5001)
@pytest.mark.xdist_group("readme-walkthrough")
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
    main = _runs(clone.folder, "main")
    assert len(main) == 2 and main["tags.nextday.reused"].iloc[0].startswith("prepare, train")
    assert len(_runs(clone.folder, "tune")) >= 1
    monitors = _runs(clone.folder, "monitor")
    assert monitors["tags.nextday.monitor.alerts"].iloc[-1] == "none"  # before the crash
    assert "accuracy" in monitors["tags.nextday.monitor.alerts"].iloc[0]  # after it


@pytest.mark.xdist_group("readme-runbook")
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

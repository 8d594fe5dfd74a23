"""Documented commands run as written: the shell of tests/test_readme.py (the README's
walkthrough) and tests/test_runbook.py (docs/runbook.md).

The commands run with bash in an empty folder holding only what a clone has there (MLproject,
conda.yaml, the example request), `.venv/bin` standing for this interpreter's environment. A
command ending in `&` starts a server: it runs in the background until the test ends, and the
next command waits for its port.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow

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


def clone_in(tmp_path: Path) -> Iterator[Shell]:
    """A folder holding what a clone has there, and a Shell in it, stopped afterwards."""
    for name in ("MLproject", "conda.yaml"):
        shutil.copy(PROJECT / name, tmp_path / name)
    (tmp_path / "docs" / "examples").mkdir(parents=True)
    for example in (PROJECT / "docs" / "examples").iterdir():
        shutil.copy(example, tmp_path / "docs" / "examples" / example.name)
    shell = Shell(tmp_path)
    try:
        yield shell
    finally:
        shell.stop()


def runs_of(folder: Path, step: str):
    """The runs of `step` in the MLflow store of `folder`, newest first."""
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    return mlflow.search_runs(
        experiment_names=["nextday"],
        filter_string=f"tags.`nextday.step` = '{step}'",
        order_by=["attributes.start_time DESC"],
    )

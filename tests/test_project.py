"""The project's own files agree with each other, and `mlflow run` runs the same code."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import mlflow
import pytest
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(lines):
    return {
        re.split(r"[<>=!~ \[]", line, maxsplit=1)[0].lower(): line.replace(" ", "")
        for line in lines
    }


def test_conda_yaml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    conda_requirements = [line for line in pip_section if not line.startswith("-e")]
    assert _requirement_names(conda_requirements) == _requirement_names(project["dependencies"])
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.split("=")[1] in project["requires-python"] or "3.11" in python


def test_lock_pins_every_dependency_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    for name in _requirement_names(wanted):
        assert name.replace("_", "-") in locked, f"{name} is not pinned in requirements.lock"


def test_every_entry_point_takes_one_overrides_string():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    for name, entry in project["entry_points"].items():
        assert list(entry["parameters"]) == ["overrides"], name
        assert entry["command"] == f"python -m nextday {name} $(echo {{overrides}})"


@pytest.mark.slow
def test_mlflow_run_and_python_m_run_the_same_step(root):
    env = {
        **os.environ,
        "NEXTDAY_ROOT": str(root),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
    }
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    overrides = "experiment=quick data.n_symbols=6 data.years=1"
    for command in (
        [
            "mlflow",
            "run",
            str(ROOT),
            "-e",
            "prepare",
            "--env-manager",
            "local",
            "--experiment-name",
            "nextday",
            "-P",
            f"overrides={overrides}",
        ],
        [sys.executable, "-m", "nextday", "prepare", *overrides.split()],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(
        experiment_names=["nextday"], filter_string="tags.`nextday.step` = 'prepare'"
    )
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert runs["metrics.rows"].nunique() == 1  # same data, same dataset
    assert set(runs["params.data.n_symbols"]) == {"6"}
    assert runs["tags.mlflow.project.entryPoint"].notna().sum() == 1


@pytest.mark.integration
def test_unknown_step_is_refused_with_usage():
    result = subprocess.run(
        [sys.executable, "-m", "nextday", "fly"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown step 'fly'" in result.stderr


@pytest.mark.parametrize("override", ["data=nasdaq", "split.nosuchkey=1"])
def test_bad_override_names_the_problem(override):
    result = subprocess.run(
        [sys.executable, "-m", "nextday", "show", override], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert override.split("=")[0].split(".")[-1] in result.stderr


@pytest.mark.integration
def test_the_wheel_carries_its_configs_and_runs_from_an_empty_folder(tmp_path):
    """`pip install .` gives a package that finds its configs without the source tree."""
    wheels, site, empty = tmp_path / "wheels", tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    # a copy of what the build reads: setuptools writes build/ beside the sources
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", symlinks=True, ignore=shutil.ignore_patterns(
        "*.egg-info", "__pycache__"))  # fmt: skip
    shutil.copytree(ROOT / "conf", source / "conf")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("nextday-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (site / "nextday" / "conf" / "config.yaml").is_file()
    assert not (site / "nextday" / "conf").is_symlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NEXTDAY_"))}
    env["PYTHONPATH"] = str(site)  # the wheel's nextday before the editable one

    def nextday(*args: str, **extra) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "nextday", *args], cwd=empty, env={**env, **extra},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    where = subprocess.run(
        [sys.executable, "-c", "import nextday.config as c; print(c.conf_dir())"],
        cwd=empty, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip() == str((site / "nextday" / "conf").resolve())
    shown = nextday("show", "experiment=quick")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "n_symbols: 30" in shown.stdout and str(empty) in shown.stdout  # paths.root = cwd
    prepared = nextday("prepare", "experiment=quick")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert (empty / "mlflow.db").exists() and (empty / "data" / "nextday.db").exists()
    # NEXTDAY_CONF points elsewhere: a folder without config.yaml is named
    missing = nextday("show", NEXTDAY_CONF=str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "NEXTDAY_CONF points there" in missing.stderr


def test_versions_on_a_store_made_before_the_daily_run_says_there_is_no_forecast(root):
    """A store with tables of its own but none of the daily run's: `versions` says so (it
    failed with a traceback when pandas wrapped the missing table in its own error)."""
    (root / "data").mkdir()
    sa.create_engine(f"sqlite:///{root}/data/nextday.db").connect().close()  # an empty store
    result = subprocess.run(
        [sys.executable, "-m", "nextday", "versions", f"paths.root={root}"],
        capture_output=True,
        text=True,
        env={**os.environ, "NEXTDAY_ROOT": str(root)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "daily forecast: none on this store yet" in result.stdout
    assert "Traceback" not in result.stderr

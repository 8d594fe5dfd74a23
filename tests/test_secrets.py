"""A password in any configured URL is refused when the config is composed: before a run
starts, so it never reaches mlflow.db, a param, config.yaml or an artifact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nextday.config import SecretInConfigError, compose

PASSWORD = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        (f"store.url=postgresql+psycopg2://nextday:{PASSWORD}@127.0.0.1:5432/nextday", "store.url"),
        (f"tune.storage=postgresql://optuna:{PASSWORD}@127.0.0.1/optuna", "tune.storage"),
        (f"mlflow.tracking_uri=https://me:{PASSWORD}@mlflow.example.org", "mlflow.tracking_uri"),
    ],
)
def test_a_password_in_a_url_is_refused_naming_the_key(override, key):
    with pytest.raises(SecretInConfigError, match=key) as caught:
        compose([override])
    assert PASSWORD not in str(caught.value)


def test_a_password_in_the_environment_url_is_refused(monkeypatch):
    monkeypatch.setenv("NEXTDAY_PG_URL", f"postgresql+psycopg2://u:{PASSWORD}@127.0.0.1/x")
    with pytest.raises(SecretInConfigError, match=r"store\.url"):
        compose(["store=postgres"])
    monkeypatch.setenv("NEXTDAY_PG_URL", "postgresql+psycopg2://u@127.0.0.1/x")
    assert compose(["store=postgres"]).store.url.endswith("u@127.0.0.1/x")


def test_the_cli_refuses_before_anything_is_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["NEXTDAY_ROOT"] = str(tmp_path)
    url = f"postgresql+psycopg2://nextday:{PASSWORD}@127.0.0.1:9/nextday"
    done = subprocess.run(
        [sys.executable, "-m", "nextday", "prepare", "experiment=quick", "store=postgres",
         f"store.url={url}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "store.url carries a password" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    written = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert not [p for p in written if PASSWORD.encode() in p.read_bytes()]
    assert not (tmp_path / "mlflow.db").exists()  # no run was started

"""prepare end to end on the quick preset: what the run logs, idempotent writes, bad input."""

import json
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from nextday.config import compose
from nextday.contracts.artifacts import DATASET
from nextday.data.store import Store
from nextday.steps.prepare import run_prepare
from nextday.tracking import configure

TABLES = ("ohlcv", "earnings", "feature_history")


def _counts(cfg):
    store = Store(str(cfg.store.url))
    store.create()
    return {table: store.count(table) for table in TABLES}


def test_quick_prepare_logs_the_dataset_reports_and_metrics(quick_cfg, root):
    run_id = run_prepare(quick_cfg)
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["nextday.step"] == "prepare"
    assert str(root) in run.info.artifact_uri  # every file under paths.root
    metrics = run.data.metrics
    for name in (
        "rows",
        "symbols",
        "earnings_rows",
        "train_rows",
        "val_rows",
        "test_rows",
        "nan_frac_ret_60d",
        "quality_duplicate",
        "fact_oracle_ic",
    ):
        assert name in metrics, name
    assert metrics["symbols"] == 30
    assert run.data.params["data.n_symbols"] == "30"

    client = mlflow.MlflowClient()
    names = {f.path for f in client.list_artifacts(run_id)}
    assert {"features.json", "config.yaml", "dataset", "reports", "oracle"} <= names
    reports = {f.path.split("/")[-1] for f in client.list_artifacts(run_id, "reports")}
    assert {"quality.md", "market_facts.md", "dataset.md", "splits.csv", "eda"} <= reports
    folder = mlflow.artifacts.download_artifacts(
        run_id=run_id, tracking_uri=mlflow.get_tracking_uri()
    )
    groups = json.loads(Path(folder, "features.json").read_text())
    assert len(groups["technical"]) == 20 and len(groups["earnings"]) == 17
    dataset = pd.read_parquet(f"{folder}/{DATASET.path}")
    assert list(dataset.columns[:5]) == ["symbol", "date", "split", "is_earnings", "label"]
    assert len(dataset) == metrics["rows"]
    assert set(dataset["split"]) == {"train", "val", "test"}
    truth = pd.read_parquet(f"{folder}/oracle/truth.parquet")
    assert "true_mean" not in dataset and len(truth) == len(dataset)
    # the dataset is registered as the run's input, so its digest shows in the UI
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest


def test_running_prepare_twice_changes_no_row_count(quick_cfg):
    run_prepare(quick_cfg)
    first = _counts(quick_cfg)
    run_prepare(quick_cfg)
    assert _counts(quick_cfg) == first
    assert first["ohlcv"] == 30 * 504 and first["earnings"] > 0


def _write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)


def _csv_rows(days=150):
    rows = []
    for symbol in ("AAA", "BBB", "CCC"):
        price = 50.0
        for day in pd.bdate_range("2023-01-02", periods=days):
            price *= 1.001 + 0.01 * ((hash((symbol, day)) % 7) - 3) / 3
            rows.append(
                {
                    "Symbol": symbol,
                    "Date": day.date(),
                    "Open": price,
                    "High": price * 1.01,
                    "Low": price * 0.99,
                    "Close": price,
                    "Volume": 1000,
                    "Extra": "x",
                }
            )
    return rows


def test_csv_source_without_earnings(root):
    path = root / "prices.csv"
    _write_csv(path, _csv_rows())
    cfg = compose(["data=csv", f"data.path={path}", f"paths.root={root}"])
    run_id = run_prepare(cfg)
    metrics = mlflow.get_run(run_id).data.metrics
    assert metrics["symbols"] == 3 and metrics["earnings_rows"] == 0
    folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reports/dataset.md")
    assert "No earnings samples exist" in Path(folder).read_text()


def _corrupt(kind, rows):
    """A copy of `rows` with one kind of problem planted at data row 8 (file line 9)."""
    rows = [dict(r) for r in rows]
    if kind == "missing column":
        return [{k: v for k, v in r.items() if k != "Close"} for r in rows]
    if kind == "open and high without low":
        return [{k: v for k, v in r.items() if k != "Low"} for r in rows]
    if kind == "unparsable date":
        rows[7]["Date"] = "2023-13-45"
    elif kind == "non-numeric price":
        rows[7]["Close"] = "abc"
    elif kind == "negative price":
        rows[7]["Low"] = -5.0
    elif kind == "duplicate rows":
        rows.insert(8, dict(rows[7]))
    elif kind == "empty file":
        return []
    return rows


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing column", r"bad\.csv line 1: missing required column.*'close'"),
        ("open and high without low", r"bad\.csv line 1: has 'open', 'high' but not 'low'"),
        ("unparsable date", r"bad\.csv line 9.*date.*2023-13-45"),
        ("non-numeric price", r"bad\.csv line 9.*'close'.*abc"),
        # a feed's defects: refused by the quality policy `fail`, naming the rows
        ("negative price", r"non_positive_price problem.*low=-5"),
        ("duplicate rows", r"duplicate problem.*same symbol and date again"),
        ("empty file", r"bad\.csv.*empty"),
    ],
)
def test_bad_csv_fails_with_a_named_problem_and_writes_nothing(root, kind, message):
    good = root / "good.csv"
    _write_csv(good, _csv_rows())
    cfg = compose(["data=csv", f"data.path={good}", f"paths.root={root}"])
    run_prepare(cfg)
    before = _counts(cfg)
    bad = root / "bad.csv"
    rows = _corrupt(kind, _csv_rows())
    if rows:
        _write_csv(bad, rows)
    else:
        bad.write_text("")
    strict = ["quality.policy.non_positive_price=fail", "quality.policy.duplicate=fail"]
    with pytest.raises(ValueError, match=message):
        run_prepare(compose(["data=csv", f"data.path={bad}", f"paths.root={root}", *strict]))
    assert _counts(cfg) == before
    configure(cfg)
    failed = mlflow.search_runs(
        search_all_experiments=True, filter_string="attributes.status = 'FAILED'"
    )
    assert len(failed) == 1


@pytest.mark.postgres
def test_prepare_on_postgres(root, pg_url, monkeypatch):
    monkeypatch.setenv("NEXTDAY_PG_URL", pg_url)
    cfg = compose(["experiment=quick", "store=postgres", f"paths.root={root}", "data.n_symbols=12"])
    run_prepare(cfg)
    run_prepare(cfg)
    store = Store(pg_url)
    assert store.count("ohlcv") == 12 * 504
    assert store.count("feature_history") > 0
    features = store.read(
        "feature_history", "symbol = :s", {"s": store.read("ohlcv")["symbol"].iloc[0]}
    )
    assert features["ts"].is_unique


@pytest.mark.postgres
def test_prepare_killed_while_writing_leaves_nothing_behind(root, pg_url):
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "NEXTDAY_PG_URL": pg_url, "NEXTDAY_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable,
        "-m",
        "nextday",
        "prepare",
        "store=postgres",
        "data.n_symbols=400",
        f"paths.root={root}",
    ]
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in child.stdout:
        if "prepare: write store ..." in line:
            break
    time.sleep(1.0)  # well inside the COPY of 500k rows
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = Store(pg_url)
    store.create()
    assert {table: store.count(table) for table in TABLES} == dict.fromkeys(TABLES, 0)

"""Monitoring: drift statistics by hand, and prediction logging that survives a database
restart."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import local_postgres
from nextday.contracts.reference import Distribution
from nextday.data.store import Store
from nextday.inference.prediction_log import PredictionLogger
from nextday.monitoring import drift
from nextday.monitoring.accuracy import daily_series, summarize
from nextday.monitoring.alerts import alerts
from nextday.monitoring.settings import MonitorSettings


def test_psi_matches_a_hand_computation():
    reference = Distribution(edges=[0.5], shares=[0.5, 0.5], sample=[0.0, 1.0])
    live = np.array([0.1, 0.9, 0.8, 0.7, 0.6])  # 20% below the edge, 80% above
    expected = (0.2 - 0.5) * np.log(0.2 / 0.5) + (0.8 - 0.5) * np.log(0.8 / 0.5)
    assert drift.psi(reference, live) == pytest.approx(expected)
    # an empty live bin is floored, not infinite
    assert np.isfinite(drift.psi(reference, np.array([0.9, 0.8])))


def test_ks_matches_a_hand_computation():
    reference = Distribution(edges=[], shares=[1.0], sample=[1.0, 2.0, 3.0, 4.0])
    statistic, p_value = drift.ks(reference, np.array([3.0, 4.0, 5.0, 6.0]))
    assert statistic == pytest.approx(0.5)  # the CDFs differ most at 2: 0.5 vs 0.0
    assert 0 < p_value < 1


def test_same_distribution_is_stable_and_a_shift_is_not():
    rng = np.random.default_rng(0)
    reference = drift.reference(rng.normal(size=50_000))
    assert len(reference.shares) == 10 and len(reference.sample) == drift.SAMPLE
    assert drift.psi(reference, rng.normal(size=5_000)) < 0.02
    assert drift.ks(reference, rng.normal(size=5_000))[1] > 0.001
    assert drift.psi(reference, rng.normal(0.5, 1.5, size=5_000)) > 0.25
    assert drift.ks(reference, rng.normal(0.5, 1.5, size=5_000))[1] < 1e-6


SETTINGS = MonitorSettings(
    model=None,
    as_of=None,
    window_days=2,
    coverage_days=2,
    drift_days=20,
    mae_multiple=1.5,
    coverage_band=(0.7, 0.9),
    psi_limit=0.25,
    window_margin=3.0,
    ks_pvalue=0.001,
    min_rows=200,
)


def test_a_features_psi_limit_is_its_training_windows_spread_and_never_below_the_floor():
    quiet = Distribution(edges=[0.0], shares=[0.5, 0.5], sample=[0.0], window_psi=[0.01, 0.02])
    restless = replace(quiet, window_psi=[0.05, 0.2])
    assert drift.psi_limit(quiet, SETTINGS) == 0.25  # 3 x 0.02 is below the floor
    assert drift.psi_limit(restless, SETTINGS) == pytest.approx(0.6)
    assert drift.psi_limit(replace(quiet, window_psi=[]), SETTINGS) == 0.25  # an older export


def test_daily_coverage_counts_only_rows_with_an_actual_and_the_alerts_judge_it():
    predictions = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2024-03-01"] * 4 + ["2024-03-04"] * 2),
            "predicted": 0.0,
            "p10": -0.01,
            "p90": 0.01,
            "actual": [0.0, 0.02, 0.01, np.nan, np.nan, np.nan],
            "latency_ms": 1.0,
        }
    ).assign(error=lambda f: f["predicted"] - f["actual"])
    daily = daily_series(predictions, SETTINGS.window_days, SETTINGS.coverage_days)
    assert daily["coverage"].iloc[0] == pytest.approx(2 / 3)  # the ends are inside
    assert np.isnan(daily["coverage"].iloc[1])  # no actual yet
    summary = summarize(predictions, daily, val_mae=0.001, actuals_before=1)
    assert summary.actuals_filled == 2 and summary.rolling_coverage == pytest.approx(2 / 3)
    raised = alerts(summary, pd.DataFrame(columns=["feature"]), SETTINGS)
    assert [a.kind for a in raised] == ["accuracy", "calibration"]
    assert raised[1].limit == 0.7 and "80% interval" in raised[1].message


def _rows(start: int, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": [f"S{i:03d}" for i in range(start, start + n)],
            "ts": pd.Timestamp("2024-03-01"),
            "model_name": "nextday-normal",
            "model_version": "1",
            "predicted": 0.001,
            "sigma": 0.01,
            "p10": -0.01,
            "p50": 0.001,
            "p90": 0.012,
            "latency_ms": 0.4,
        }
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_first_logged_day_gets_its_actual(backend, tmp_path, request):
    """The actual of day d needs the bars of d and the next day; the first logged day's bars
    are read too (SQLite compares the stored date text with the bound parameter)."""
    from nextday.monitoring.actuals import fill_actuals

    url = f"sqlite:///{tmp_path}/s.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = Store(url)
    store.create()
    days = pd.bdate_range("2024-03-01", periods=3)
    closes = [100.0, 102.0, 99.96]
    store.upsert(
        "ohlcv",
        pd.DataFrame(
            {"symbol": "S000", "ts": days, "open": closes, "high": closes, "low": closes}
            | {"close": closes, "volume": 1e6, "source": "test"}
        ),
    )
    logged = pd.concat([_rows(0, 1).assign(ts=day) for day in days], ignore_index=True)
    filled = fill_actuals(store, logged.assign(actual=np.nan))
    np.testing.assert_allclose(filled["actual"].iloc[:2], [0.02, -0.02])
    assert np.isnan(filled["actual"].iloc[2])  # the next close is not in yet
    # an actual stored earlier gives way to the bars (rewritten since), and stays without them
    stale = fill_actuals(store, logged.assign(actual=[0.5, 0.5, 0.5]))
    np.testing.assert_allclose(stale["actual"], [0.02, -0.02, 0.5])
    np.testing.assert_allclose(stale["error"], stale["predicted"] - stale["actual"])


def test_a_full_buffer_counts_what_it_drops():
    # nothing listens on port 1 of loopback: every write fails at once
    away = "postgresql+psycopg2://postgres@127.0.0.1:1/nextday"
    logger = PredictionLogger(away, max_buffer=25, background=False)
    for start in range(0, 40, 10):
        logger.log(_rows(start, 10))
    assert logger.flush() == 0 and logger.failures == 1
    assert logger.pending == 25 and logger.dropped == 15  # the oldest rows went first


@pytest.mark.postgres
def test_logged_predictions_survive_a_database_restart():
    folder = Path(tempfile.mkdtemp(prefix="nextday-pg-restart-"))
    try:
        url = local_postgres.start(folder)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        logger = PredictionLogger(url, interval=0.1)
        for start in range(0, 50, 10):
            logger.log(_rows(start, 10))
        deadline = time.time() + 20
        while logger.written < 50 and time.time() < deadline:
            time.sleep(0.1)
        assert logger.written == 50
        local_postgres.stop(folder)  # the database goes away in the middle of logging
        for start in range(50, 100, 10):
            logger.log(_rows(start, 10))
        deadline = time.time() + 20  # a loaded machine may take a while to try and fail
        while logger.failures == 0 and time.time() < deadline:
            time.sleep(0.1)
        assert logger.failures > 0 and logger.pending == 50
        local_postgres.start(folder, port=port)  # and comes back on the same address
        logger.close(timeout=30)
        assert logger.pending == 0 and logger.dropped == 0
        stored = Store(url).read("model_predictions")
        assert len(stored) == 100 and stored["symbol"].nunique() == 100
    finally:
        local_postgres.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _poisoned(bad_symbol) -> pd.DataFrame:
    rows = _rows(0, 40)
    rows.loc[17, "symbol"] = bad_symbol
    return rows


def _dead_letters(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def _poison_check(url: str, bad_symbol, error_text: str, folder: Path) -> None:
    logger = PredictionLogger(url, background=False, dead_letter=folder / "dead.jsonl")
    logger.log(_poisoned(bad_symbol))
    assert logger.flush() == 39
    assert logger.rejected == 1 and logger.failures == 0 and logger.pending == 0
    (letter,) = _dead_letters(folder / "dead.jsonl")
    assert letter["ts"].startswith("2024-03-01") and error_text in letter["error"]
    logger.log(_rows(100, 10))  # later predictions are not blocked by the bad row
    assert logger.flush() == 10
    stored = Store(url).read("model_predictions")
    assert len(stored) == 49 and logger.written == 49


def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_written(tmp_path):
    url = f"sqlite:///{tmp_path}/log.db"
    _poison_check(url, None, "NOT NULL", tmp_path)  # an empty key: SQLite refuses it


@pytest.mark.postgres
def test_postgres_refuses_a_long_symbol_and_only_that_row_is_lost(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="nextday-pg-poison-"))
    try:
        url = local_postgres.start(folder)
        _poison_check(url, "X" * 40, "too long", tmp_path)
    finally:
        local_postgres.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_rows_that_cannot_be_written_at_close_are_counted_and_kept(tmp_path):
    away = "postgresql+psycopg2://postgres@127.0.0.1:1/nextday"
    logger = PredictionLogger(away, background=False, dead_letter=tmp_path / "dead.jsonl")
    logger.log(_rows(0, 12))
    logger.close(timeout=0.1)
    assert logger.unwritten == 12 and logger.rejected == 0 and logger.pending == 0
    letters = _dead_letters(tmp_path / "dead.jsonl")
    assert len(letters) == 12 and "unreachable" in letters[0]["error"]


def test_the_loggers_old_module_still_imports_it_with_a_deprecation_warning():
    import importlib
    import sys

    sys.modules.pop("nextday.monitoring.logger", None)
    with pytest.warns(DeprecationWarning, match="nextday.inference.prediction_log"):
        old = importlib.import_module("nextday.monitoring.logger")
    assert old.PredictionLogger is PredictionLogger

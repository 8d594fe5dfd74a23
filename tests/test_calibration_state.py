"""The online calibration state in the store: the monitor's daily update (each day once, in
order, in the same transaction as the actuals), serving's cached read, and the monitor's
static-against-served comparison."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from nextday.config import compose
from nextday.data.store import Store
from nextday.monitoring import calibration
from nextday.uncertainty.online import OnlineSettings, ServedOnline
from nextday.uncertainty.replay import REPLAY_COLUMNS, replay
from nextday.uncertainty.stored_state import (
    TABLE,
    StoredState,
    read_state,
    state_rows,
    static_interval,
)

NAME, VERSION = "nextday-normal", "3"
DAYS = pd.bdate_range("2024-03-04", periods=12)
SYMBOLS = 60


def served(**changes) -> ServedOnline:
    settings = OnlineSettings.from_config(compose().calibrate.online)
    return ServedOnline(replace(settings, **changes), ())


def logged(scale: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """Predictions as the logger writes them (static interval +-1.28% around p50, no
    multiplier), their actuals filled: returns of s.d. `scale` (0.01 covers the interval
    80% of the time; 0.02 about 48%)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        [(f"S{i:02d}", day) for day in DAYS for i in range(SYMBOLS)], columns=["symbol", "ts"]
    )
    p50 = rng.normal(0, 0.002, len(frame))
    actual = p50 + rng.normal(0, scale, len(frame))
    return frame.assign(
        model_name=NAME,
        model_version=VERSION,
        predicted=p50,
        sigma=0.01,
        p10=p50 - 0.0128,
        p50=p50,
        p90=p50 + 0.0128,
        actual=actual,
        error=p50 - actual,
        latency_ms=1.0,
        created_at=pd.Timestamp("2024-03-20"),
        online_multiplier=np.nan,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = request.getfixturevalue("pg_url")
    store = Store(url)
    store.create()
    return store


def batch_replay(predictions: pd.DataFrame, online: ServedOnline):
    """The rule run over all of `predictions` in one go, from the static calibration."""
    frame = static_interval(predictions).assign(
        date=pd.to_datetime(predictions["ts"]), actual=predictions["actual"], vol=np.nan
    )
    return replay(frame[list(REPLAY_COLUMNS)], online.settings, online.start())


def test_the_monitors_daily_update_uses_each_day_once_and_matches_one_replay(store):
    online, predictions = served(), logged()
    vol = np.full(len(predictions), np.nan)
    last = predictions["ts"] == DAYS[-1]
    waiting = predictions.assign(actual=predictions["actual"].where(~last))  # no close yet

    first = calibration.record(store, waiting, vol, online, NAME, VERSION)
    assert first is not None and first.days == len(DAYS) - 1
    assert first.state.through == DAYS[-2].date().isoformat()
    assert first.state.multiplier[0] > 1.3  # half the returns fall outside: widen
    # logged as the static interval: only the first day was served as the state says (m = 1)
    assert (first.rows, first.off_state) == ((~last).sum(), (~last).sum() - SYMBOLS)
    assert read_state(store, NAME, VERSION) == first.state
    # the actuals landed with it
    assert store.read("model_predictions")["actual"].notna().sum() == (~last).sum()

    # run again on the same data: nothing new, nothing moves
    again = calibration.record(store, waiting, vol, online, NAME, VERSION)
    assert again is not None and again.days == 0 and again.state == first.state

    # a late outcome of a day already used changes nothing; the new day moves it once
    late = waiting.copy()
    late.loc[predictions["ts"] == DAYS[0], "actual"] += 0.5
    assert calibration.record(store, late, vol, online, NAME, VERSION).days == 0
    final = calibration.record(store, predictions, vol, online, NAME, VERSION)
    assert final.days == 1 and final.state.through == DAYS[-1].date().isoformat()
    # day by day through the store is the same as one replay over every day
    whole = batch_replay(predictions, online).state
    assert final.state.multiplier == pytest.approx(whole.multiplier)
    assert final.state.error_sum == pytest.approx(whole.error_sum)
    assert final.state.updates == whole.updates == (len(DAYS),)


def test_a_static_version_keeps_no_state_and_a_restart_goes_back_to_the_static_interval(store):
    predictions, vol = logged(), np.full(len(logged()), np.nan)
    assert calibration.record(store, predictions, vol, None, NAME, VERSION) is None
    assert read_state(store, NAME, VERSION) is None
    online = served()
    calibration.record(store, predictions, vol, online, NAME, VERSION)
    assert read_state(store, NAME, VERSION).multiplier != (1.0,)
    calibration.restart(store, online, NAME, VERSION)  # a state that has used no day yet
    assert read_state(store, NAME, VERSION) == online.start()
    assert store.read(TABLE)["through"].isna().all()


def test_serving_reads_the_state_once_per_ttl_and_keeps_it_while_the_database_is_away(
    tmp_path, caplog
):
    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}")
    store.create()
    online, now = served(), [0.0]
    reading = StoredState(f"sqlite:///{path}", NAME, VERSION, online, ttl=60, clock=lambda: now[0])
    assert reading.state() is None  # nothing written yet: the static interval
    wider = replace(online.start(), multiplier=(1.4,), through="2024-03-04")
    store.upsert(TABLE, state_rows(wider, NAME, VERSION))
    now[0] = 59.0
    assert reading.state() is None  # still the read of t = 0
    now[0] = 60.0
    assert reading.state() == wider
    for engine in (store.engine, reading.store.engine):
        engine.dispose()  # no pooled connection keeps the file open
    path.unlink()  # the database is gone: the next read fails
    now[0] = 200.0
    assert reading.state() == wider
    assert "not read from" in caplog.text and "serving the last state read" in caplog.text


def test_a_stored_state_of_other_settings_is_not_served(store):
    pid = served()
    aci = replace(ServedOnline(replace(pid.settings, rule="aci"), ()).start(), multiplier=(2.0,))
    store.upsert(TABLE, state_rows(aci, NAME, VERSION))
    url = store.engine.url.render_as_string(hide_password=False)
    assert StoredState(url, NAME, VERSION, pid, ttl=0).state() is None
    assert StoredState(url, NAME, VERSION, served(rule="aci"), ttl=0).state() == aci


def test_the_monitor_compares_the_static_interval_with_the_one_served(store):
    """Served with the state the daily update gave (as serving logs it: the interval scaled,
    the multiplier kept), the monitor takes the multiplier back out for the static interval."""
    online, predictions = served(), logged()
    vol = np.full(len(predictions), np.nan)
    run = batch_replay(predictions, online)
    served_rows = predictions.assign(p10=run.lower, p90=run.upper, online_multiplier=run.multiplier)
    checked = calibration.judge(served_rows, vol, online, coverage_days=5)
    window = predictions["ts"].isin(DAYS[-5:])

    def coverage(low, high) -> float:
        y = predictions["actual"][window]
        return float(((y >= low[window]) & (y <= high[window])).mean())

    metrics = checked.metrics
    assert metrics["static_coverage_80"] == pytest.approx(
        coverage(predictions["p10"], predictions["p90"])
    )
    assert metrics["online_coverage_80"] == pytest.approx(
        coverage(served_rows["p10"], served_rows["p90"])
    )
    assert metrics["static_coverage_80"] < 0.6 < metrics["online_coverage_80"]
    assert metrics["online_width_80"] > metrics["static_width_80"]
    assert metrics["online_multiplier"] == pytest.approx(run.multiplier[window].mean())
    assert {"static_coverage", "online_coverage", "pid_coverage", "aci_coverage"} <= set(
        checked.by_month.columns
    )
    # the PID replayed from m = 1 is the interval served
    np.testing.assert_allclose(
        checked.by_month["pid_coverage"], checked.by_month["online_coverage"]
    )
    # a static version: only the static figures
    static = calibration.judge(predictions, vol, None, coverage_days=5)
    assert "online_coverage_80" not in static.metrics
    assert static.metrics["static_coverage_80"] == metrics["static_coverage_80"]


@pytest.mark.postgres
def test_a_database_that_hangs_holds_up_one_read_not_every_request(pg_url):
    """A lock held on calibration_state stands for a database that stops answering: the
    reader whose turn it is waits (up to the read timeout, then keeps its state); the other
    requests are answered meanwhile with the state already held."""
    import threading

    import sqlalchemy as sa

    store = Store(pg_url)
    store.create()
    online, now = served(), [0.0]
    wider = replace(online.start(), multiplier=(1.4,), through="2024-03-04")
    store.upsert(TABLE, state_rows(wider, NAME, VERSION))
    reading = StoredState(pg_url, NAME, VERSION, online, ttl=60, clock=lambda: now[0])
    assert reading.state() == wider
    with store.engine.connect() as holder:
        holder.execute(sa.text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
        now[0] = 61.0
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(reading.state()))
        waiting.start()
        while not reading._reading and waiting.is_alive():  # its read has begun
            waiting.join(0.01)
        assert reading.state() == wider  # answered while that read still waits
        assert waiting.is_alive()
        waiting.join()  # the read timed out: the state read before is kept
        holder.rollback()
    assert answers == [wider]

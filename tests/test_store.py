"""The store on SQLite and a real PostgreSQL: upserts, transactions, the COPY path."""

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from nextday.data.store import Store
from nextday.features import ALL_FEATURES


def _bars(n_days=5, symbols=("AAA", "BBBB"), start="2024-01-02", shift=0.0):
    days = pd.bdate_range(start, periods=n_days)
    frame = pd.DataFrame([(s, d) for s in symbols for d in days], columns=["symbol", "ts"])
    base = np.arange(len(frame), dtype=float) + 10.0 + shift
    return frame.assign(
        open=base, high=base + 1, low=base - 1, close=base + 0.5, volume=1e6, source="test"
    )


def _features(n=4):
    frame = pd.DataFrame({"symbol": ["AAA"] * n, "ts": pd.bdate_range("2024-01-02", periods=n)})
    frame["is_earnings"] = [True, False] * (n // 2)
    for i, name in enumerate(ALL_FEATURES):
        frame[name] = np.linspace(-1, 1, n) * (i + 1)
    frame.loc[1, "eps_surprise"] = np.nan
    return frame


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = request.getfixturevalue("pg_url")
    store = Store(url, batch_rows=3)  # tiny batches: several per write
    store.create()
    return store


def test_upsert_twice_keeps_row_counts_and_updates_values(store):
    store.upsert("ohlcv", _bars())
    store.upsert("ohlcv", _bars(shift=100.0))
    assert store.count("ohlcv") == 10
    frame = store.read("ohlcv").sort_values(["symbol", "ts"]).reset_index(drop=True)
    expected = _bars(shift=100.0)
    np.testing.assert_allclose(frame["close"], expected["close"])
    assert list(frame["ts"].dt.date) == list(expected["ts"].dt.date)


def test_feature_history_round_trips_with_nan_as_null(store):
    features = _features()
    store.upsert("feature_history", features)
    back = store.read("feature_history").sort_values("ts").reset_index(drop=True)
    assert back["is_earnings"].astype(bool).tolist() == features["is_earnings"].tolist()
    for name in ALL_FEATURES:
        np.testing.assert_allclose(back[name].astype(float), features[name], equal_nan=True)
    assert np.isnan(back.loc[1, "eps_surprise"])


def test_a_failing_write_leaves_nothing_behind(store):
    store.upsert("ohlcv", _bars(n_days=2))
    before = store.read("ohlcv")
    bad_features = _features().drop(columns="is_earnings")  # NOT NULL column missing
    with pytest.raises(ValueError, match="is_earnings"):
        store.upsert_many({"ohlcv": _bars(n_days=5, shift=50.0), "feature_history": bad_features})
    after = store.read("ohlcv")
    pd.testing.assert_frame_equal(before, after)


def test_repeated_keys_in_one_write_are_refused(store):
    bars = pd.concat([_bars(n_days=2), _bars(n_days=1)])
    with pytest.raises(ValueError, match="repeat a key"):
        store.upsert("ohlcv", bars)
    assert store.count("ohlcv") == 0


def test_earnings_timestamps_round_trip(store):
    earnings = pd.DataFrame(
        {
            "symbol": ["AAA", "AAA"],
            "ts": pd.to_datetime(["2024-01-02 16:05", "2024-04-02 07:00"]),
            "session_date": pd.to_datetime(["2024-01-02", "2024-04-01"]),
            "timing": ["amc", "bmo"],
            "eps_estimate": [1.0, np.nan],
            "eps_actual": [1.1, 1.3],
            "source": [None, "csv"],
        }
    )
    store.upsert("earnings", earnings)
    back = store.read("earnings").sort_values("ts").reset_index(drop=True)
    assert list(back["ts"]) == list(earnings["ts"])
    assert list(back["session_date"]) == list(earnings["session_date"])
    assert back["timing"].tolist() == ["amc", "bmo"]
    assert pd.isna(back.loc[1, "eps_estimate"]) and pd.isna(back.loc[0, "source"])


def test_password_in_url_is_refused():
    with pytest.raises(ValueError, match="password"):
        Store("postgresql+psycopg2://u:secret@127.0.0.1:1/db")


def test_password_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("NEXTDAY_PG_PASSWORD", "s3cret")
    store = Store("postgresql+psycopg2://u@127.0.0.1:1/db", password_env="NEXTDAY_PG_PASSWORD")
    assert store.url.password == "s3cret"
    assert "s3cret" not in store.display_url


def test_an_older_store_gains_the_new_optional_columns_and_keeps_its_rows(store):
    """A store made before `online_multiplier` existed: create() adds it, NULL in old rows."""
    row = pd.DataFrame(
        {
            "symbol": ["AAA"],
            "ts": [pd.Timestamp("2024-01-02")],
            "model_name": ["nextday-normal"],
            "model_version": ["1"],
            "predicted": [0.01],
            "created_at": [pd.Timestamp("2024-01-02 18:00")],
        }
    )
    store.upsert("model_predictions", row)
    with store.engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE model_predictions DROP COLUMN online_multiplier"))
    assert "online_multiplier" not in store.read("model_predictions")
    store.create()
    kept = store.read("model_predictions")
    assert len(kept) == 1 and kept["predicted"].iloc[0] == 0.01
    assert kept["online_multiplier"].isna().all()
    store.upsert("model_predictions", row.assign(online_multiplier=1.2))
    assert store.read("model_predictions")["online_multiplier"].tolist() == [1.2]


def test_a_store_missing_a_required_column_is_refused_by_name(store):
    with store.engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE model_predictions DROP COLUMN created_at"))
    with pytest.raises(
        RuntimeError, match="model_predictions lacks the required column created_at"
    ):
        store.create()

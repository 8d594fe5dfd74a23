"""The logged predictions of one served version, and their actuals once the next close is in
the store."""

from __future__ import annotations

import pandas as pd

from nextday.data.store import Store


def logged_predictions(
    store: Store,
    name: str,
    version: str,
    as_of: pd.Timestamp | None = None,
    since: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The store's `model_predictions` of version `version` of `name` (made before `as_of`,
    for a replay of what the monitor knew then; from `since` on, where given)."""
    where, params = (
        "model_name = :name and model_version = :version",
        {"name": name, "version": version},
    )
    if since is not None:
        where, params = where + " and ts >= :since", params | {"since": since.date()}
    predictions = store.read("model_predictions", where, params)
    if as_of is not None:
        predictions = predictions[predictions["ts"] < as_of]
    if predictions.empty:
        raise ValueError(
            f"no logged predictions of {name} version {version} in the store: "
            "log them with ModelInference(..., logger=PredictionLogger(store_url)) or "
            "`backtest.write_predictions=true`"
        )
    return predictions


def fill_actuals(store: Store, predictions: pd.DataFrame) -> pd.DataFrame:
    """actual = close[next bar] / close[t] - 1 of the symbol, where the next close is known;
    error = predicted - actual. Returns the predictions with both filled where possible. The
    store's bars win over an actual stored earlier (a prediction logged again after its bars
    were rewritten, as a rerun of `live` does, or a revised bar); where the next close is not
    in the store, the stored actual stays."""
    symbols = list(predictions["symbol"].unique())
    # a date, not a datetime: SQLite compares the stored text, and "2024-01-02" sorts before
    # "2024-01-02 00:00:00", which would leave out the first day's bars
    bars = store.read(
        "ohlcv", "ts >= :first", {"first": pd.Timestamp(predictions["ts"].min()).date()}
    )
    bars = bars[bars["symbol"].isin(symbols)].sort_values(["symbol", "ts"])
    bars["actual"] = bars.groupby("symbol")["close"].shift(-1) / bars["close"] - 1.0
    bars["ts"] = pd.to_datetime(bars["ts"]).dt.normalize()
    known = bars.dropna(subset=["actual"]).set_index(["symbol", "ts"])["actual"]
    key = pd.MultiIndex.from_arrays([predictions["symbol"], pd.to_datetime(predictions["ts"])])
    filled = predictions.copy()
    looked_up = pd.Series(known.reindex(key).to_numpy(), index=filled.index)
    filled["actual"] = looked_up.fillna(pd.to_numeric(filled["actual"]))
    filled["error"] = filled["predicted"] - filled["actual"]
    return filled

"""Turn what callers send into the float32 array a graph takes, or say exactly what is wrong.

Accepted: one row as a mapping (column -> number) or a vector; many rows as a DataFrame, a 2-D
array, or a list of mappings. A window model (LSTM) also takes a 3-D array (rows, window,
features); as a table it takes one column per feature and lag (`ret_1d_lag0` is the row's own
day, `ret_1d_lag1` the day before, ...).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# the longest symbol the store holds (model_predictions.symbol is VARCHAR(32))
MAX_SYMBOL_LENGTH = 32
# an ISO calendar date, optionally at midnight without a zone: 2021-01-04, 2021-01-04T00:00:00
_ISO_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?)?$")


class InputError(ValueError):
    """Input that a model cannot answer; the message names the problem."""


# dtype kinds that convert to numbers without being numbers (a datetime becomes nanoseconds)
NOT_NUMBERS = {"b": "booleans", "M": "datetimes", "m": "timedeltas", "c": "complex numbers"}


def row_count(data) -> int | None:
    """Rows of a batch, known before converting it (None: not a batch shape)."""
    if isinstance(data, (pd.DataFrame, np.ndarray)):
        return len(data)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return len(data)
    return None


def input_columns(features: Sequence[str], window: int) -> list[str]:
    """The table columns of a model: its features, or one per feature and lag for a window."""
    if window <= 1:
        return list(features)
    return [f"{f}_lag{lag}" for lag in range(window - 1, -1, -1) for f in features]


def _names(items) -> str:
    items = list(items)
    shown = ", ".join(repr(str(i)) for i in items[:8])
    return f"[{shown}{', ...' if len(items) > 8 else ''}] ({len(items)})"


def _check_columns(given: Sequence[str], columns: list[str], where: str = "") -> None:
    missing = [c for c in columns if c not in set(given)]
    extra = [c for c in given if c not in set(columns)]
    duplicated = sorted({str(c) for c in given if list(given).count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing feature(s) {_names(missing)}")
    if extra:
        problems.append(f"unexpected feature(s) {_names(extra)}")
    if duplicated:
        problems.append(f"duplicated feature(s) {_names(duplicated)}")
    if problems:
        raise InputError(f"{where}{'; '.join(problems)}; the model takes {_names(columns)}")


_NOT_NUMBER_TYPES = (
    (bool, np.bool_, "a boolean"),
    ((dt.date, dt.datetime, np.datetime64, pd.Timestamp), None, "a datetime"),
    ((dt.timedelta, np.timedelta64, pd.Timedelta), None, "a timedelta"),
    ((complex, np.complexfloating), None, "a complex number"),
)


def _refuse_non_numbers(values, columns: list[str], rows_offset: int) -> None:
    """Values that numpy would turn into numbers without being numbers (True -> 1.0)."""
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            for types, extra, what in _NOT_NUMBER_TYPES:
                if isinstance(value, types) or (extra is not None and isinstance(value, extra)):
                    raise InputError(
                        f"row {i + rows_offset}, column {columns[j]!r}: {value!r} is {what}, "
                        "not a number"
                    )


def _numeric(values, columns: list[str], rows_offset: int = 0) -> np.ndarray:
    """float32 array of `values`; a value that is not a number is named by row and column."""
    if not (isinstance(values, np.ndarray) and values.dtype.kind in "iuf"):
        _refuse_non_numbers(values, columns, rows_offset)
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.dtype == object:
        table = pd.DataFrame(list(values) if not isinstance(values, np.ndarray) else values)
        for j, column in enumerate(table.columns):
            converted = pd.to_numeric(table[column], errors="coerce")
            bad = converted.isna() & table[column].notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(
                    f"row {i + rows_offset}, column {columns[j]!r}: {table[column].iloc[i]!r} "
                    "is not a number"
                )
        array = table.apply(pd.to_numeric).to_numpy(dtype=np.float64)
    return array


def _check_finite(array: np.ndarray, columns: list[str]) -> np.ndarray:
    with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
        as_float32 = array.astype(np.float32)
    bad = ~np.isfinite(as_float32)
    if bad.any():
        flat = as_float32.reshape(len(as_float32), -1)
        bad_flat = bad.reshape(len(bad), -1)
        row, column = (int(v[0]) for v in np.nonzero(bad_flat))
        value = array.reshape(len(array), -1)[row, column]
        kind = "NaN" if np.isnan(value) else ("inf" if np.isinf(value) else "too large for float32")
        raise InputError(
            f"row {row}, column {columns[column]!r} is {kind} ({int(bad.sum())} bad value(s) "
            f"in {flat.size}); the model needs finite numbers"
        )
    return as_float32


def to_array(data, features: Sequence[str], window: int = 1, single: bool = False) -> np.ndarray:
    """The checked float32 model input of `data` (one row when `single`)."""
    columns = input_columns(features, window)
    if isinstance(data, pd.Series):
        data = data.to_dict()
    if single:
        array = _one_row(data, columns)
    elif isinstance(data, pd.DataFrame):
        array = _from_frame(data, columns)
    elif isinstance(data, np.ndarray):
        array = _from_array(data, columns, window, len(features))
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        if len(data) == 0:
            raise InputError("empty batch: no rows to predict")
        if not all(isinstance(row, Mapping) for row in data):
            return to_array(np.asarray(data, dtype=object), features, window)
        for i, row in enumerate(data):
            _check_columns(list(row), columns, where=f"row {i}: ")
        array = _numeric([[row[c] for c in columns] for row in data], columns)
    else:
        raise InputError(
            "a batch must be a DataFrame, a 2-D array or a list of mappings, got "
            f"{type(data).__name__}"
        )
    array = _check_finite(array, columns)
    if window > 1:
        array = array.reshape(len(array), window, len(features))
    return array


def _one_row(data, columns: list[str]) -> np.ndarray:
    """One row: a mapping of feature -> value, or a vector in column order."""
    n = len(columns)
    if isinstance(data, Mapping):
        _check_columns(list(data), columns)
        return _numeric([[data[c] for c in columns]], columns)
    if isinstance(data, (str, bytes)) or not isinstance(data, (Sequence, np.ndarray)):
        raise InputError(
            f"one row must be a mapping of feature -> value or a vector of {n} numbers, "
            f"got {type(data).__name__}"
        )
    vector = np.asarray(data, dtype=object)
    if vector.ndim != 1 or len(vector) != n:
        raise InputError(
            f"one row must hold {n} values (the model's features), got shape {vector.shape}"
        )
    return _numeric([list(vector)], columns)


def _from_frame(data: pd.DataFrame, columns: list[str]) -> np.ndarray:
    if data.empty:
        raise InputError("empty batch: no rows to predict")
    given = [str(c) for c in data.columns]
    if given == columns:  # the usual case (and what MLflow's schema enforcement hands on)
        frame = data
    else:
        _check_columns(given, columns)
        frame = data.set_axis(given, axis=1)[columns]
    dtypes = dict(zip(columns, frame.dtypes, strict=True))
    for kind, what in NOT_NUMBERS.items():
        wrong = [c for c in columns if getattr(dtypes[c], "kind", "O") == kind]
        if wrong:
            raise InputError(f"column(s) {_names(wrong)} hold {what}, not numbers")
    if all(pd.api.types.is_numeric_dtype(d) for d in dtypes.values()):
        return frame.to_numpy(dtype=np.float64)  # the usual case: no per-cell conversion
    return _numeric(frame.to_numpy(dtype=object), columns)


def _from_array(data: np.ndarray, columns: list[str], window: int, n_features: int) -> np.ndarray:
    n = len(columns)
    if data.size == 0 or len(data) == 0:
        raise InputError("empty batch: no rows to predict")
    if window > 1 and data.ndim == 3:
        if data.shape[1:] != (window, n_features):
            raise InputError(
                f"a window batch must have shape (rows, {window}, {n_features}), got {data.shape}"
            )
        data = data.reshape(len(data), -1)
    if data.ndim != 2 or data.shape[1] != n:
        raise InputError(f"a batch must have shape (rows, {n}), got {data.shape}")
    if data.dtype.kind in NOT_NUMBERS:
        raise InputError(f"the batch holds {NOT_NUMBERS[data.dtype.kind]}, not numbers")
    return _numeric(data, columns)


def check_keys(keys, rows: int) -> pd.DataFrame:
    """The (symbol, date) keys a batch is logged under, checked before anything is answered:
    a symbol is a non-empty string of at most MAX_SYMBOL_LENGTH characters; a date is an
    unambiguous calendar date (YYYY-MM-DD, or a naive date or midnight timestamp). A
    time-zone-aware stamp, an integer such as 20210104 and a day/month string such as
    04/01/2021 are refused, naming the row. Returns symbol (str) and ts (datetime64[ns])."""
    if not isinstance(keys, pd.DataFrame):
        keys = pd.DataFrame(list(keys), columns=["symbol", "date"])
    if len(keys) != rows:
        raise InputError(f"{len(keys)} keys for {rows} rows to log")
    try:  # each distinct value checked once (a batch is mostly one date): O(distinct) Python
        symbols, symbol_codes, bad_symbol = _each_distinct(keys["symbol"], _symbol)
        dates, date_codes, bad_date = _each_distinct(keys["date"], _date)
    except TypeError:  # an unhashable value (a list in a cell): row by row
        symbols = [_symbol(i, value) for i, value in enumerate(keys["symbol"])]
        dates = [_date(i, value) for i, value in enumerate(keys["date"])]
        symbol_codes = date_codes = np.arange(rows)
        bad_symbol = bad_date = None
    refusals = [bad for bad in (bad_symbol, bad_date) if bad is not None]
    if refusals:  # the first row with a refused key, its symbol before its date
        raise min(refusals, key=lambda bad: bad[0])[1]
    ts = pd.DatetimeIndex(dates).astype("datetime64[ns]")
    return pd.DataFrame(
        {"symbol": np.asarray(symbols, dtype=object)[symbol_codes], "ts": ts[date_codes]}
    )


def _each_distinct(values, check) -> tuple[list, np.ndarray, tuple[int, InputError] | None]:
    """`check(row, value)` for each distinct value, in the order they first appear; the
    results, each row's index into them, and (row, error) of the first refused value."""
    codes, distinct = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    first = np.full(len(distinct), len(codes))
    np.minimum.at(first, codes, np.arange(len(codes)))
    checked = []
    for k, value in enumerate(distinct):
        try:
            checked.append(check(int(first[k]), value))
        except InputError as error:  # the earliest refused row: values come in row order
            return checked, codes, (int(first[k]), error)
    return checked, codes, None


def _symbol(row: int, value) -> str:
    if not isinstance(value, str):
        raise InputError(f"row {row}: symbol {value!r} is not a string")
    symbol = value.strip()
    if not symbol:
        raise InputError(f"row {row}: the symbol is empty")
    if len(symbol) > MAX_SYMBOL_LENGTH:
        raise InputError(
            f"row {row}: symbol {symbol[:12]!r}... is {len(symbol)} characters; at most "
            f"{MAX_SYMBOL_LENGTH} are stored"
        )
    return symbol


def _date(row: int, value) -> pd.Timestamp:
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        raise InputError(
            f"row {row}: date {value!r} is a number, not an unambiguous date: send YYYY-MM-DD"
        )
    if isinstance(value, str):
        found = _ISO_DATE.match(value.strip())
        if not found:
            raise InputError(
                f"row {row}: date {value!r} is not a calendar date as YYYY-MM-DD (a time zone, "
                "a time of day or a day/month order that cannot be told is refused)"
            )
        try:
            return pd.Timestamp(dt.date.fromisoformat(found.group(1))).as_unit("ns")
        except ValueError:  # no such day, or beyond what a timestamp holds (year 2262)
            raise InputError(f"row {row}: date {value!r} is not a valid calendar date") from None
    if isinstance(value, (pd.Timestamp, dt.datetime, np.datetime64, dt.date)):
        try:
            stamp = pd.Timestamp(value).as_unit("ns")
        except (ValueError, OverflowError):
            raise InputError(f"row {row}: date {value!r} is out of range") from None
        if stamp.tzinfo is not None:
            raise InputError(
                f"row {row}: date {value!r} carries a time zone: send the exchange date as "
                "YYYY-MM-DD"
            )
        if stamp != stamp.normalize():
            raise InputError(f"row {row}: date {value!r} has a time of day: send the date only")
        return stamp
    raise InputError(f"row {row}: date {value!r} is not a date")

"""Daily bars and earnings reports from long-format CSV files.

Reading is strict: any cell that cannot be what its column says stops the load with a
`DataSourceError` naming the file, the line (the header is line 1) and the column, because a
silently dropped or guessed value would bias everything downstream. What a real feed gets
wrong while the file itself is well-formed (empty price cells, negative prices or volumes, a
symbol and date given twice) is read as it is: the quality step reports it and its policy in
`conf/quality/` decides.
"""

from __future__ import annotations

import csv
import glob
import logging
import os

import numpy as np
import pandas as pd

from nextday.data.schema import (
    EARNINGS_COLUMNS,
    EARNINGS_VALUE_COLUMNS,
    EXCHANGE_TZ,
    OHLCV_COLUMNS,
    TIMINGS,
    DataSourceError,
    RawMarket,
    assign_session_dates,
    empty_earnings,
    infer_timing,
)

logger = logging.getLogger(__name__)

PRICE_FILE_REQUIRED = ["symbol", "date", "close"]
RANGE_COLUMNS = ["open", "high", "low"]
GROUP_COLUMN = "sector"  # optional: each symbol's group, for the backtest's group analytics
PRICE_FILE_OPTIONAL = [*RANGE_COLUMNS, "volume", GROUP_COLUMN]
EARNINGS_REQUIRED = ["symbol", "date"]
EARNINGS_OPTIONAL = ["timing", *EARNINGS_VALUE_COLUMNS]
NO_EARNINGS_NOTE = "csv: no earnings file was given, so there are no earnings samples"
_BARE_NUMBER = r"^[+-]?\d+(?:\.\d*)?$"
# a time of day followed by Z or a UTC offset such as -05:00
_ZONE_SUFFIX = r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def load_csv(
    path: str,
    earnings_path: str | None = None,
    default_timing: str = "amc",
    bmo_through: pd.Timestamp | None = None,
) -> RawMarket:
    """Load bars from `path` (a file or a glob) and optional earnings from `earnings_path`
    (`bmo_through`: see `assign_session_dates`)."""
    if default_timing not in TIMINGS:
        raise DataSourceError(f"default_timing {default_timing!r} is not one of {TIMINGS}")
    files = _expand(path)
    notes: list[str] = []
    frames = [_read_prices(file, notes) for file in files]
    symbols = _groups(frames, notes)
    ohlcv = _combine(frames, notes)
    if earnings_path is None:
        earnings = empty_earnings()
        notes.append(NO_EARNINGS_NOTE)
    else:
        earnings = _read_earnings(earnings_path, ohlcv, default_timing, notes, bmo_through)
    logger.info(
        "csv: %d bars of %d symbols from %d file(s), %d earnings reports",
        len(ohlcv),
        ohlcv["symbol"].nunique(),
        len(files),
        len(earnings),
    )
    return RawMarket(ohlcv=ohlcv, earnings=earnings, source="csv", symbols=symbols, notes=notes)


def _expand(path: str) -> list[str]:
    """The files `path` names: itself, or the sorted matches when it is a glob pattern."""
    if any(char in path for char in "*?["):
        files = sorted(glob.glob(path))
        if not files:
            raise DataSourceError(f"no CSV file matches the pattern {path!r}")
        return files
    if not os.path.isfile(path):
        raise DataSourceError(f"{path}: no such file")
    return [path]


def _read_table(
    file: str, required: list[str], optional: list[str], text: list[str]
) -> pd.DataFrame:
    """Read the known columns of `file` under normalised names; `text` columns as strings.

    Other columns are left to pandas' fast number parser; a column that does not come out
    numeric is checked cell by cell later. The frame keeps pandas' index 0..n-1 (the data row
    number), which `_line_of` maps back to a line of the file for error messages.
    """
    try:
        # header=None: read the names as they are, before pandas renames repeated ones
        header = pd.read_csv(file, nrows=1, header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataSourceError(f"{file}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataSourceError(f"{file}: cannot be read as CSV: {error}") from None
    found = [str(name).strip().lstrip("\ufeff").strip().lower() for name in header.iloc[0]]
    missing = [name for name in required if name not in found]
    if missing:
        raise DataSourceError(
            f"{file} line 1: missing required column(s) {', '.join(map(repr, missing))}; "
            f"found {', '.join(map(repr, found))}"
        )
    wanted = [name for name in [*required, *optional] if name in found]
    repeated = [name for name in wanted if found.count(name) > 1]
    if repeated:
        raise DataSourceError(
            f"{file} line 1: column(s) {', '.join(map(repr, repeated))} appear more than once"
        )
    positions = [found.index(name) for name in wanted]
    try:
        table = pd.read_csv(
            file,
            usecols=positions,
            dtype={
                position: str
                for position, name in zip(positions, wanted, strict=True)
                if name in text
            },
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataSourceError(f"{file}: cannot be read as CSV: {error}") from None
    table.columns = [found[position] for position in sorted(positions)]
    if table.empty:
        raise DataSourceError(f"{file}: the file is empty (a header but no data rows)")
    return table[wanted]


def _line_of(file: str, row: int) -> int:
    """The 1-based line where data row `row` (0-based, as pandas numbers it) starts.

    Only used on the error path: pandas skips blank lines and quoted fields may span lines,
    so the row number alone does not give the line.
    """
    with open(file, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        previous_end = 0
        records = -1  # the header is record -1
        for record in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line, which pandas skips
            if records == row:
                return start
            records += 1
    return row + 2  # fall back to header + row when the file changed under us


def _fail(file: str, row: int, column: str, problem: str) -> DataSourceError:
    return DataSourceError(f"{file} line {_line_of(file, row)}, column {column!r}: {problem}")


def _strings(table: pd.DataFrame, column: str) -> pd.Series:
    """The column's cells stripped, with blank cells as NA."""
    values = table[column].str.strip()
    return values.mask(values == "")


def _parse_symbols(table: pd.DataFrame, file: str) -> pd.Series:
    symbols = _strings(table, "symbol")
    bad = symbols.isna().to_numpy()
    if bad.any():
        raise _fail(file, int(np.argmax(bad)), "symbol", "the symbol is empty")
    return symbols.astype(str)


def _parse_dates(table: pd.DataFrame, file: str) -> pd.Series:
    """Dates or date-times as exchange-local naive datetime64[ns].

    A time with a UTC offset (2024-01-25T16:05:00-05:00) is converted to New York time; one
    without is taken as New York time already.
    """
    text = _strings(table, "date")
    missing = text.isna().to_numpy()
    if missing.any():
        raise _fail(file, int(np.argmax(missing)), "date", "the date is empty")
    zoned = text.str.contains(":", regex=False).to_numpy().copy()
    if zoned.any():  # the regex is slow, so only look at the stamps that have a time
        zoned[zoned] = text[zoned].str.contains(_ZONE_SUFFIX).to_numpy()
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for subset, utc in ((~zoned, False), (zoned, True)):
        if subset.any():
            parsed[subset] = _to_datetimes(text[subset], utc=utc)
    # pandas reads "today" and "now" as dates; a date has digits
    bad = (parsed.isna() | ~text.str.contains(r"\d")).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise _fail(file, row, "date", f"{text.iloc[row]!r} is not a date")
    return parsed


def _to_datetimes(text: pd.Series, *, utc: bool) -> pd.Series:
    """ISO dates first (fast), then other formats one by one; NaT where neither works."""
    try:
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=utc)
    except ValueError:
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    failed = parsed.isna() & ~text.str.match(_BARE_NUMBER)  # "7" is not the 7th of this month
    if failed.any():
        retried = []
        for value in text[failed]:
            try:
                retried.append(pd.to_datetime(value, utc=utc))
            except (ValueError, TypeError, OverflowError):
                retried.append(pd.NaT)
        parsed = parsed.astype(object)
        parsed[failed] = retried
        parsed = pd.to_datetime(parsed, utc=utc)
    if utc:
        parsed = parsed.dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def _parse_numbers(table: pd.DataFrame, file: str, column: str, *, non_negative: bool) -> pd.Series:
    """Floats; blank cells become NaN, anything else that is not a finite number is an error."""
    raw = table[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        numbers = raw.astype("float64")
        bad = np.isinf(numbers.to_numpy())
    else:
        # pandas could not read the whole column as numbers: find the cell that is not one.
        text = _strings(table.astype({column: str}), column).mask(raw.isna())
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
        values = numbers.to_numpy()
        bad = (np.isnan(values) & text.notna().to_numpy()) | np.isinf(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise _fail(file, row, column, f"{str(raw.iloc[row]).strip()!r} is not a number")
    if non_negative:
        negative = numbers.to_numpy() < 0
        if negative.any():
            row = int(np.argmax(negative))
            raise _fail(file, row, column, f"{str(raw.iloc[row]).strip()!r} is negative")
    return numbers


def _read_prices(file: str, notes: list[str]) -> pd.DataFrame:
    """One price file as OHLCV columns plus `_file`/`_row` for duplicate messages.

    Close-only files (symbol, date, close, optionally volume) are read too: their bars get
    open = high = low = close (and volume 0 when none is given), which a note says and the
    quality report flags (close_only, constant_volume), and the features that become
    degenerate on such bars are named there and dropped.
    """
    table = _read_table(
        file, PRICE_FILE_REQUIRED, PRICE_FILE_OPTIONAL, text=["symbol", "date", GROUP_COLUMN]
    )
    frame = pd.DataFrame(
        {"symbol": _parse_symbols(table, file), "ts": _parse_dates(table, file).dt.normalize()}
    )
    ranges = [c for c in RANGE_COLUMNS if c in table.columns]
    if ranges and len(ranges) < len(RANGE_COLUMNS):
        absent = [c for c in RANGE_COLUMNS if c not in table.columns]
        raise DataSourceError(
            f"{file} line 1: has {', '.join(map(repr, ranges))} but not "
            f"{', '.join(map(repr, absent))}: give all of open, high and low, or none "
            "(close-only bars)"
        )
    # negative values are a feed's defect, not a file's: validation reports them by policy
    frame["close"] = _parse_numbers(table, file, "close", non_negative=False)
    for column in RANGE_COLUMNS:
        frame[column] = (
            _parse_numbers(table, file, column, non_negative=False) if ranges else frame["close"]
        )
    if not ranges:
        notes.append(
            f"csv: {file} has no open, high or low column: its bars are close-only "
            "(open = high = low = close)"
        )
    if "volume" in table.columns:
        frame["volume"] = _parse_numbers(table, file, "volume", non_negative=False)
    else:
        frame["volume"] = 0.0
        notes.append(f"csv: {file} has no volume column: volume is 0 on every bar")
    if GROUP_COLUMN in table.columns:
        frame[GROUP_COLUMN] = _strings(table, GROUP_COLUMN)
    frame["_file"] = file
    frame["_row"] = np.arange(len(frame))
    return frame


def _groups(frames: list[pd.DataFrame], notes: list[str]) -> pd.DataFrame | None:
    """symbol, sector from the price files' optional `sector` column: each symbol's latest
    non-empty value (a company can be reclassified; a note says which were), or None."""
    given = [f[["symbol", "ts", GROUP_COLUMN]] for f in frames if GROUP_COLUMN in f.columns]
    if not given:
        return None
    rows = pd.concat(given).dropna(subset=[GROUP_COLUMN]).sort_values("ts", kind="stable")
    changed = rows.groupby("symbol")[GROUP_COLUMN].nunique()
    if (changed > 1).any():
        notes.append(
            f"csv: {int((changed > 1).sum())} symbol(s) change {GROUP_COLUMN} over time, e.g. "
            f"{changed[changed > 1].index[0]!r}: the latest value is used for the whole history"
        )
    return rows.groupby("symbol", as_index=False)[GROUP_COLUMN].last()


def _combine(frames: list[pd.DataFrame], notes: list[str]) -> pd.DataFrame:
    """Concatenate and sort the files' rows. A (symbol, date) given twice is a feed defect
    that validation reports and handles by its `duplicate` policy (default: the first row is
    kept); the note says where the first repeat is."""
    frame = pd.concat(frames, ignore_index=True)
    repeated = frame.duplicated(["symbol", "ts"], keep="first").to_numpy()
    if repeated.any():
        second = frame.iloc[int(np.argmax(repeated))]
        same = (frame["symbol"] == second["symbol"]) & (frame["ts"] == second["ts"])
        first = frame[same].iloc[0]
        where_first = f"{first['_file']} line {_line_of(first['_file'], first['_row'])}"
        where_second = f"{second['_file']} line {_line_of(second['_file'], second['_row'])}"
        notes.append(
            f"csv: {int(repeated.sum())} row(s) repeat a symbol and date, e.g. {where_second} "
            f"repeats {second['symbol']!r} on {second['ts']:%Y-%m-%d} from {where_first}: "
            "quality.policy.duplicate decides"
        )
    frame = frame.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    return frame[OHLCV_COLUMNS]


def _parse_timing(table: pd.DataFrame, file: str, ts: pd.Series, default: str) -> pd.Series:
    """The `timing` column where given, else inferred from the time of day."""
    inferred = infer_timing(ts, default)
    if "timing" not in table.columns:
        return inferred
    given = _strings(table, "timing").str.lower()
    bad = (given.notna() & ~given.isin(TIMINGS)).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise _fail(
            file, row, "timing", f"{table['timing'].iloc[row]!r} is not one of {', '.join(TIMINGS)}"
        )
    return given.astype(object).where(given.notna(), inferred)


def _read_earnings(
    file: str,
    ohlcv: pd.DataFrame,
    default_timing: str,
    notes: list[str],
    bmo_through: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The earnings file in EARNINGS_COLUMNS, each report assigned to its session date."""
    if not os.path.isfile(file):
        raise DataSourceError(f"{file}: no such file")
    table = _read_table(
        file, EARNINGS_REQUIRED, EARNINGS_OPTIONAL, text=["symbol", "date", "timing"]
    )
    frame = pd.DataFrame({"symbol": _parse_symbols(table, file), "ts": _parse_dates(table, file)})
    frame["session_date"] = pd.NaT
    frame["timing"] = _parse_timing(table, file, frame["ts"], default_timing).astype(str)
    for column in EARNINGS_VALUE_COLUMNS:
        if column in table.columns:
            frame[column] = _parse_numbers(table, file, column, non_negative=False)
        else:
            frame[column] = np.nan
    assigned = assign_session_dates(frame, ohlcv, bmo_through)
    dropped = len(frame) - len(assigned)
    if dropped:
        notes.append(
            f"csv: {dropped} of {len(frame)} earnings report(s) dropped: dated before the "
            "symbol's first bar or after its last, or of a symbol without bars"
        )
    assigned["session_date"] = assigned["session_date"].astype("datetime64[ns]")
    assigned = assigned.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    return assigned[EARNINGS_COLUMNS]

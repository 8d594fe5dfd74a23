"""The one store: market data, feature history and prediction logs behind SQLAlchemy.

Every write is an upsert keyed by the table's primary key and runs in one transaction, so a
step can run twice without duplicating a row and a write killed half-way leaves nothing behind.
SQLite takes batched `INSERT ... ON CONFLICT`; PostgreSQL takes a binary COPY into a temporary
table and one `INSERT ... SELECT ... ON CONFLICT`, and with the `timescaledb` extension the
time-series tables become hypertables.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from nextday.features import ALL_FEATURES

log = logging.getLogger(__name__)

metadata = sa.MetaData()

ohlcv_table = sa.Table(
    "ohlcv",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("ts", sa.Date, primary_key=True),
    sa.Column("open", sa.Float),
    sa.Column("high", sa.Float),
    sa.Column("low", sa.Float),
    sa.Column("close", sa.Float),
    sa.Column("volume", sa.Float),
    sa.Column("source", sa.String(32)),
)

earnings_table = sa.Table(
    "earnings",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("ts", sa.DateTime, primary_key=True),
    sa.Column("session_date", sa.Date, nullable=False),
    sa.Column("timing", sa.String(16)),
    sa.Column("eps_estimate", sa.Float),
    sa.Column("eps_actual", sa.Float),
    sa.Column("revenue_estimate", sa.Float),
    sa.Column("revenue_actual", sa.Float),
    sa.Column("gross_margin", sa.Float),
    sa.Column("operating_margin", sa.Float),
    sa.Column("source", sa.String(32)),
)

feature_history_table = sa.Table(
    "feature_history",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("ts", sa.Date, primary_key=True),
    sa.Column("is_earnings", sa.Boolean, nullable=False),
    *[sa.Column(name, sa.Float) for name in ALL_FEATURES],
)

model_predictions_table = sa.Table(
    "model_predictions",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("ts", sa.Date, primary_key=True),
    sa.Column("model_name", sa.String(64), primary_key=True),
    sa.Column("model_version", sa.String(32), primary_key=True),
    sa.Column("predicted", sa.Float, nullable=False),
    sa.Column("sigma", sa.Float),
    sa.Column("p10", sa.Float),
    sa.Column("p50", sa.Float),
    sa.Column("p90", sa.Float),
    sa.Column("actual", sa.Float),
    sa.Column("error", sa.Float),
    sa.Column("latency_ms", sa.Float),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # the online width multiplier the served p10..p90 carry (uncertainty/online.py);
    # NULL: the static interval was served. The static one is p50 -+ (p50 - p10) / m.
    sa.Column("online_multiplier", sa.Float),
)

# one row per monitor run, model and feature (or `prediction`): the dashboard's drift panel
model_drift_table = sa.Table(
    "model_drift",
    metadata,
    sa.Column("run_ts", sa.DateTime, primary_key=True),
    sa.Column("model_name", sa.String(64), primary_key=True),
    sa.Column("model_version", sa.String(32), primary_key=True),
    sa.Column("feature", sa.String(64), primary_key=True),
    sa.Column("psi", sa.Float),
    sa.Column("ks_stat", sa.Float),
    sa.Column("ks_p", sa.Float),
    sa.Column("rows", sa.Integer),
)

# the online calibration state of each served version: one row per volatility bucket,
# written by `monitor` (and `live`) after each day's outcomes, read by serving
calibration_state_table = sa.Table(
    "calibration_state",
    metadata,
    sa.Column("model_name", sa.String(64), primary_key=True),
    sa.Column("model_version", sa.String(32), primary_key=True),
    sa.Column("bucket", sa.Integer, primary_key=True),  # 0 = the calmest
    sa.Column("rule", sa.String(16), nullable=False),
    sa.Column("level", sa.Float, nullable=False),
    sa.Column("vol_from", sa.Float),  # the bucket's vol_20d range; NULL: unbounded
    sa.Column("vol_to", sa.Float),
    sa.Column("multiplier", sa.Float, nullable=False),
    sa.Column("error_sum", sa.Float, nullable=False),
    sa.Column("updates", sa.Integer, nullable=False),
    sa.Column("through", sa.Date),  # the last day whose outcomes it used
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

# the daily run (`forecast`): tomorrow's forecast of each symbol from one close
forecasts_table = sa.Table(
    "forecasts",
    metadata,
    sa.Column("as_of", sa.Date, primary_key=True),  # the close the features are from
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("target_date", sa.Date, nullable=False),  # the next session: the return's close
    sa.Column("model", sa.String(16), nullable=False),  # normal | earnings
    sa.Column("model_name", sa.String(64), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("prediction", sa.Float, nullable=False),
    sa.Column("sigma", sa.Float),
    sa.Column("p10", sa.Float),
    sa.Column("p50", sa.Float),
    sa.Column("p90", sa.Float),
    sa.Column("out_of_range", sa.Boolean, nullable=False),
    # a report lands before the next open: the normal model's forecast stands until the
    # pre-open run rescores the symbol with the earnings model
    sa.Column("earnings_pending", sa.Boolean, nullable=False),
    sa.Column("session", sa.String(16), nullable=False),  # the run that wrote it
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# the book the daily run holds after each as-of close (target weights; shares at that close)
positions_table = sa.Table(
    "positions",
    metadata,
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("weight", sa.Float, nullable=False),  # of capital: +long, -short
    sa.Column("shares", sa.Float, nullable=False),
    sa.Column("price", sa.Float, nullable=False),  # the as-of close
    sa.Column("book_day", sa.Integer, nullable=False),  # sessions since the book started
)

# one row per daily run: what it did, so the monitor can tell a session without a forecast
forecast_runs_table = sa.Table(
    "forecast_runs",
    metadata,
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("session", sa.String(16), primary_key=True),
    sa.Column("target_date", sa.Date, nullable=False),
    sa.Column("symbols", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),
    sa.Column("book_day", sa.Integer),  # NULL: no book (no model could score)
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

TABLES = {
    t.name: t
    for t in (
        ohlcv_table,
        earnings_table,
        feature_history_table,
        model_predictions_table,
        model_drift_table,
        calibration_state_table,
        forecasts_table,
        positions_table,
        forecast_runs_table,
    )
}
# time column of each table that becomes a TimescaleDB hypertable
HYPERTABLES = {"ohlcv": "ts", "feature_history": "ts", "model_predictions": "ts"}

_PG_EPOCH = np.datetime64("2000-01-01", "D")
_PG_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us")


def resolve_url(url: str, password_env: str | None = None) -> URL:
    """The store URL with the password taken from the environment, never from config."""
    parsed = make_url(url)
    if parsed.password:
        raise ValueError(
            "store.url must not carry a password: set it in the environment "
            f"({password_env or 'NEXTDAY_PG_PASSWORD'}) instead"
        )
    if parsed.get_backend_name() == "postgresql":
        password = os.environ.get(password_env or "", "") or os.environ.get("PGPASSWORD", "")
        if password:
            parsed = parsed.set(password=password)
    elif parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return parsed


class Store:
    """Tables of nextday in one database. `Store(url)` connects; `create()` makes the tables."""

    def __init__(
        self,
        url: str | URL,
        password_env: str | None = None,
        batch_rows: int = 50_000,
        timeout_s: float | None = None,
    ):
        """`timeout_s`: the longest a connection attempt or a statement may take (None: the
        driver's defaults, which can wait minutes for a host that does not answer)."""
        self.url = resolve_url(url, password_env) if isinstance(url, str) else url
        self.batch_rows = batch_rows
        self.engine = sa.create_engine(
            self.url, future=True, connect_args=_timeouts(self.url, timeout_s)
        )
        self.dialect = self.engine.dialect.name
        self.hypertables: list[str] = []

    @property
    def display_url(self) -> str:
        """The URL with any password masked, safe to log."""
        return self.url.render_as_string(hide_password=True)

    def create(self, timescaledb: bool = True) -> None:
        """Create missing tables (and hypertables where TimescaleDB is installed), and add the
        optional columns a table made by an older version lacks."""
        metadata.create_all(self.engine)
        self._add_missing_columns()
        if self.dialect == "postgresql" and timescaledb:
            self.hypertables = self._make_hypertables()

    def _add_missing_columns(self) -> None:
        """`ALTER TABLE ... ADD COLUMN` for each nullable column an existing table lacks (a
        store made before the column was added): its rows keep their values, NULL in it."""
        existing = sa.inspect(self.engine)
        with self.engine.begin() as connection:
            for table in TABLES.values():
                have = {c["name"] for c in existing.get_columns(table.name)}
                for column in table.columns:
                    if column.name in have:
                        continue
                    if not column.nullable:
                        raise RuntimeError(
                            f"the store's {table.name} lacks the required column "
                            f"{column.name}: it was made by another nextday; migrate it by hand"
                        )
                    kind = column.type.compile(dialect=self.engine.dialect)
                    connection.execute(
                        sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
                    )
                    log.info("store: added column %s.%s", table.name, column.name)

    def _make_hypertables(self) -> list[str]:
        with self.engine.begin() as connection:
            available = connection.execute(
                sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            ).first()
            if not available:
                log.info("timescaledb is not installed: time-series tables stay plain tables")
                return []
            connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
            made = []
            for table, column in HYPERTABLES.items():
                connection.execute(
                    sa.text(
                        "SELECT create_hypertable(:table, :column, if_not_exists => TRUE, "
                        "migrate_data => TRUE)"
                    ),
                    {"table": table, "column": column},
                )
                made.append(table)
            return made

    def count(self, table: str) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(sa.select(sa.func.count()).select_from(TABLES[table])).scalar()
            )

    def read(
        self, table: str, where: str | None = None, params: dict | None = None
    ) -> pd.DataFrame:
        """Read a table (optionally filtered by an SQL condition with bound parameters)."""
        query = f"SELECT * FROM {TABLES[table].name}"
        if where:
            query += f" WHERE {where}"
        with self.engine.connect() as connection:
            frame = pd.read_sql_query(sa.text(query), connection, params=params)
        for column in TABLES[table].columns:
            if isinstance(column.type, sa.Date | sa.DateTime) and column.name in frame:
                frame[column.name] = pd.to_datetime(frame[column.name])
        return frame

    def upsert_many(
        self,
        frames: dict[str, pd.DataFrame],
        replace: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, int]:
        """Upsert several tables in one transaction: all of them land, or none. `replace`
        (table -> column values) first deletes that table's rows with those values, in the
        same transaction: a set of rows rewritten whole (a day's book)."""
        written = {}
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            for table, values in (replace or {}).items():
                self._delete(cursor, TABLES[table], values)
            for table, frame in frames.items():
                written[table] = self._upsert(cursor, TABLES[table], frame)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()
        return written

    def upsert(self, table: str, frame: pd.DataFrame) -> int:
        return self.upsert_many({table: frame})[table]

    def delete_many(self, deletes: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Delete (table, SQL condition, bound parameters) rows, all in one transaction."""
        with self.engine.begin() as connection:
            for table, where, params in deletes:
                connection.execute(
                    sa.text(f"DELETE FROM {TABLES[table].name} WHERE {where}"), params
                )

    def _delete(self, cursor, table: sa.Table, values: dict[str, Any]) -> None:
        mark = "%s" if self.dialect == "postgresql" else "?"
        where = " AND ".join(f'"{table.c[name].name}" = {mark}' for name in values)
        row = pd.DataFrame([values]).reindex(columns=[c.name for c in table.columns])
        converted = dict(zip(row.columns, _python_rows(table, row)[0], strict=True))
        cursor.execute(f"DELETE FROM {table.name} WHERE {where}", [converted[n] for n in values])

    def _upsert(self, cursor, table: sa.Table, frame: pd.DataFrame) -> int:
        columns = [c.name for c in table.columns]
        missing = [c for c in columns if c not in frame.columns and not table.c[c].nullable]
        if missing:
            raise ValueError(f"cannot write {table.name}: missing columns {missing}")
        frame = frame.reindex(columns=columns)
        if frame.empty:
            return 0
        keys = [c.name for c in table.primary_key.columns]
        duplicated = frame.duplicated(keys)
        if duplicated.any():
            first = frame.loc[duplicated, keys].iloc[0].to_dict()
            raise ValueError(
                f"{table.name}: {int(duplicated.sum())} rows repeat a key, e.g. {first}"
            )
        if self.dialect == "postgresql":
            self._copy_upsert(cursor, table, frame, keys)
        else:
            self._insert_upsert(cursor, table, frame, keys)
        return len(frame)

    def _insert_upsert(
        self, cursor, table: sa.Table, frame: pd.DataFrame, keys: Sequence[str]
    ) -> None:
        columns = list(frame.columns)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in keys)
        statement = (
            f"INSERT INTO {table.name} ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        )
        for start in range(0, len(frame), self.batch_rows):
            chunk = frame.iloc[start : start + self.batch_rows]
            cursor.executemany(statement, _python_rows(table, chunk))

    def _copy_upsert(
        self, cursor, table: sa.Table, frame: pd.DataFrame, keys: Sequence[str]
    ) -> None:
        columns = list(frame.columns)
        quoted = ", ".join(f'"{c}"' for c in columns)
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in keys)
        # NaN and -infinity travel in the binary COPY; NULL is what SQL means by missing
        selected = ", ".join(_null_if_missing(table.c[c]) for c in columns)
        staging = f"_stage_{table.name}"
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        for start in range(0, len(frame), self.batch_rows):
            chunk = frame.iloc[start : start + self.batch_rows]
            cursor.execute(f"TRUNCATE {staging}")
            cursor.copy_expert(
                f"COPY {staging} ({quoted}) FROM STDIN WITH (FORMAT binary)",
                io.BytesIO(_pg_binary(table, chunk)),
            )
            cursor.execute(
                f"INSERT INTO {table.name} ({quoted}) SELECT {selected} FROM {staging} "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
            )


def _python_rows(table: sa.Table, frame: pd.DataFrame) -> list[tuple]:
    """Rows as DB-API tuples: dates as ISO strings (what SQLite stores), NaN as NULL."""
    data = {}
    for column in table.columns:
        values = frame[column.name]
        if isinstance(column.type, sa.DateTime):
            data[column.name] = _iso(values, "%Y-%m-%d %H:%M:%S.%f")
        elif isinstance(column.type, sa.Date):
            data[column.name] = _iso(values, "%Y-%m-%d")
        elif isinstance(column.type, sa.Boolean):
            data[column.name] = values.astype(bool).astype(int).tolist()
        elif isinstance(column.type, sa.Float):
            numbers = values.to_numpy(dtype=float)
            # None as an array: numpy's stubs take where(c, x, None) for where(c)
            data[column.name] = np.where(np.isfinite(numbers), numbers, np.array(None)).tolist()
        else:
            data[column.name] = values.where(values.notna(), None).tolist()
    return list(zip(*data.values(), strict=True))


def _iso(values: pd.Series, fmt: str) -> list:
    stamps = pd.to_datetime(values)
    text = stamps.dt.strftime(fmt)
    return text.where(stamps.notna(), None).tolist()


def _pg_binary(table: sa.Table, frame: pd.DataFrame) -> bytes:
    """The frame in PostgreSQL's binary COPY format, built with numpy (no per-value Python).

    Each row is an int16 field count, then per field an int32 length and big-endian data
    (length -1 for NULL). Text fields vary in length, so rows are grouped by the lengths of
    their text fields and each group becomes one fixed-width numpy record array. Missing
    floats travel as NaN (fixed width) and become NULL in the INSERT that follows.
    """
    text_columns = [c.name for c in table.columns if isinstance(c.type, sa.String)]
    encoded = {
        name: frame[name].fillna("").astype(str).str.encode("utf-8").to_numpy()
        for name in text_columns
    }
    lengths = pd.DataFrame(
        {
            name: np.where(frame[name].isna(), -1, [len(b) for b in encoded[name]])
            for name in text_columns
        }
    )
    values = {c.name: _pg_values(c, frame[c.name]) for c in table.columns if c.name not in encoded}
    out = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    for key, rows in lengths.groupby(text_columns, sort=False).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        text_length = dict(zip(text_columns, key, strict=True))
        fields: list[tuple[str, str]] = [("count", ">i2")]
        for column in table.columns:
            fields.append((f"{column.name}__len", ">i4"))
            if column.name in text_length:
                if text_length[column.name] > 0:
                    fields.append((column.name, f"S{text_length[column.name]}"))
            else:
                fields.append((column.name, _pg_dtype(column)))
        record = np.zeros(len(rows), dtype=fields)
        record["count"] = len(table.columns)
        for column in table.columns:
            name = column.name
            if name in text_length:
                record[f"{name}__len"] = text_length[name]
                if text_length[name] > 0:
                    record[name] = encoded[name][rows]
            else:
                record[f"{name}__len"] = np.dtype(_pg_dtype(column)).itemsize
                record[name] = values[name][rows]
        out += record.tobytes()
    out += struct.pack(">h", -1)
    return bytes(out)


def _pg_dtype(column: sa.Column) -> str:
    if isinstance(column.type, sa.DateTime):
        return ">i8"
    if isinstance(column.type, sa.Date):
        return ">i4"
    if isinstance(column.type, sa.Boolean):
        return "u1"
    if isinstance(column.type, sa.BigInteger):
        return ">i8"
    if isinstance(column.type, sa.Integer):
        return ">i4"
    return ">f8"


def _timeouts(url: URL, seconds: float | None) -> dict[str, Any]:
    if seconds is None:
        return {}
    if url.get_backend_name() == "postgresql":
        return {
            "connect_timeout": max(1, math.ceil(seconds)),
            "options": f"-c statement_timeout={int(seconds * 1000)}",
        }
    return {"timeout": seconds}  # SQLite: how long to wait for a locked database


def _null_if_missing(column: sa.Column) -> str:
    """The staging column as the INSERT selects it: the fixed-width stand-ins for a missing
    value (NaN, and -infinity for a nullable date) back to NULL."""
    if isinstance(column.type, sa.Float):
        return f"NULLIF(\"{column.name}\", 'NaN'::float8)"
    if isinstance(column.type, sa.DateTime | sa.Date) and column.nullable:
        kind = "timestamp" if isinstance(column.type, sa.DateTime) else "date"
        return f"NULLIF(\"{column.name}\", '-infinity'::{kind})"
    return f'"{column.name}"'


def _pg_values(column: sa.Column, values: pd.Series) -> np.ndarray:
    if isinstance(column.type, sa.DateTime | sa.Date):
        unit = "us" if isinstance(column.type, sa.DateTime) else "D"
        stamps = pd.to_datetime(values).to_numpy(dtype=f"datetime64[{unit}]")
        missing = np.isnat(stamps)
        if missing.any() and not column.nullable:
            raise ValueError(f"column {column.name!r} has missing dates")
        epoch = _PG_EPOCH_US if unit == "us" else _PG_EPOCH
        days = (stamps - epoch).astype(np.int64)
        # PostgreSQL's binary -infinity (the type's smallest value), NULL after the INSERT
        lowest = np.iinfo(np.int64 if unit == "us" else np.int32).min
        return np.where(missing, lowest, days)
    if isinstance(column.type, sa.Boolean):
        return values.astype(bool).to_numpy().astype(np.uint8)
    if isinstance(column.type, sa.Integer):
        if values.isna().any():
            raise ValueError(f"column {column.name!r} has missing values")
        return values.to_numpy(dtype=np.int64)
    numbers = values.to_numpy(dtype=float)
    return np.where(np.isfinite(numbers), numbers, np.nan)


def open_store(cfg) -> Store:
    """The store the composed config's `store` group names, its tables created (every step
    that reads or writes market data or prediction logs opens it this way)."""
    store = Store(
        str(cfg.store.url),
        password_env=cfg.store.get("password_env"),
        batch_rows=int(cfg.store.batch_rows),
    )
    store.create(timescaledb=bool(cfg.store.get("timescaledb", False)))
    return store

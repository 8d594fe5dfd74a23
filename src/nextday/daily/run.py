"""One daily run, one as-of session: the store brought up to date, the outcomes the new bars
complete learnt, the features at the close, the production versions' forecasts, the book and
the orders.

Nothing is written until every guard has passed (stale data, restated bars under `refuse`,
a pre-open run without its evening, a version that takes other inputs, another run holding
the store). Then three writes, each one transaction and each idempotent: the new bars and
reports; the actuals they complete and the online calibration's state (what the monitor
does, so that the as-of answers carry them); the features, forecasts, answers, book and the
run's row. A rerun of the same day writes the same rows, logs no prediction twice and does not
advance the book: the book after day t is always built from the book after the session
before t.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from nextday.daily import ForecastRefused, feed
from nextday.daily.book import Book, next_book
from nextday.daily.calendar import TradingCalendar
from nextday.daily.features import AsOfFeatures, as_of_features, due_before_open, known_reports
from nextday.daily.scoring import Scored, Scorers, route, score
from nextday.daily.settings import ForecastSettings
from nextday.daily.update import RestatedBarsError, Update, update
from nextday.data.quality import DataQualityError
from nextday.data.schema import EARNINGS_COLUMNS, OHLCV_COLUMNS
from nextday.data.store import Store, feature_history_table
from nextday.monitoring.schedule import Schedule
from nextday.timing import stage

log = logging.getLogger(__name__)


@dataclass
class Day:
    """Everything one daily run computed and wrote for one as-of session."""

    as_of: pd.Timestamp
    target: pd.Timestamp
    session: str
    update: Update
    features: AsOfFeatures
    scored: Scored
    forecast: pd.DataFrame  # the as-of day's forecasts as they stand after this run
    book: Book | None  # None: no forecast to trade
    seconds: dict[str, float] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    learnt: dict[str, int] = field(default_factory=dict)  # version -> days of outcomes learnt

    @property
    def skipped(self) -> dict[str, str]:
        return self.update.skipped | self.features.skipped | self.scored.skipped

    @property
    def metrics(self) -> dict[str, float]:
        out = {
            "forecast_symbols": float(len(self.forecast)),
            "forecast_scored": float(len(self.scored.forecasts)),
            "forecast_skipped": float(len(self.skipped)),
            "forecast_out_of_range": float(self.forecast["out_of_range"].sum())
            if len(self.forecast)
            else 0.0,
            "forecast_earnings_pending": float(self.forecast["earnings_pending"].sum())
            if len(self.forecast)
            else 0.0,
            "forecast_new_bars": float(len(self.update.bars)),
            "forecast_restated_bars": float(
                self.update.restated[["symbol", "ts"]].drop_duplicates().shape[0]
            ),
            "forecast_unsettled_bars": float(self.update.unsettled),
            "forecast_off_calendar_bars": float(self.update.off_calendar),
            "forecast_quality_problems": float(len(self.update.new_problems())),
            "forecast_orders": float(len(self.book.orders)) if self.book else 0.0,
            "forecast_turnover": self.book.turnover if self.book else 0.0,
            "forecast_outcome_days": float(sum(self.learnt.values())),
        }
        return out | {f"forecast_seconds_{k}": v for k, v in self.seconds.items()}


def plan_days(
    store: Store,
    calendar: TradingCalendar,
    settings: ForecastSettings,
    source: str,
    now: pd.Timestamp,
) -> list[pd.Timestamp]:
    """The as-of sessions to run, in order: `forecast.as_of` (a session), else the newest
    closed one (the built-in market: the session after its newest stored bar); with
    `catch_up`, every session after the last forecast up to it."""
    if settings.as_of is not None:
        as_of = settings.as_of
        if not calendar.is_session(as_of):
            raise ForecastRefused(
                f"forecast.as_of={as_of.date()} is not a {calendar.name} session: the next is "
                f"{calendar.next_session(as_of).date()}"
            )
    elif source == feed.SYNTHETIC:
        newest = _newest_bar(store, feed.stored_sources(source))
        if newest is None:
            raise ForecastRefused(
                "the store has no bars of the built-in market: run `python -m nextday prepare`"
            )
        as_of = calendar.next_session(newest)
    else:
        as_of = calendar.last_closed(now)
    if not settings.catch_up or settings.session != "evening":
        return [as_of]
    last = _last_forecast(store)
    if last is None or last >= as_of:
        return [as_of]
    return list(calendar.sessions(calendar.next_session(last), as_of))


@dataclass(frozen=True)
class DailyRun:
    """What every as-of day of one invocation shares."""

    settings: ForecastSettings
    store: Store
    calendar: TradingCalendar
    data: Any  # the data config group: the source
    quality: Any  # the quality config group: prepare's checks and policies
    scorers: Scorers
    continued: Any = None  # LiveSettings: how the built-in market is continued
    yahoo_client: Any = None  # data.source=yfinance: a stand-in for the yfinance module


def run_day(
    run: DailyRun, as_of: pd.Timestamp, now: pd.Timestamp, run_id: str | None = None
) -> Day:
    """Compute the as-of day and write it (see the module docstring)."""
    settings, store, calendar = run.settings, run.store, run.calendar
    data, quality, scorers = run.data, run.quality, run.scorers
    seconds: dict[str, float] = {}
    target = calendar.next_session(as_of)
    source = str(data.source)
    with stage("forecast", "update", seconds):
        first = _window_start(calendar, as_of, settings.history_days)
        stored = _stored_bars(store, feed.stored_sources(source), first, as_of)
        newest = stored["ts"].max() if len(stored) else None
        since = first if newest is None else _sessions_back(calendar, newest, settings.overlap_days)
        fetched = feed.fetch(data, store, since, target, run.continued, client=run.yahoo_client)
        try:
            brought = update(stored, fetched, calendar, as_of, now, quality, settings.restated)
        except (RestatedBarsError, DataQualityError) as error:
            raise ForecastRefused(str(error)) from error
        bars = pd.concat([stored[OHLCV_COLUMNS], brought.bars], ignore_index=True)
        if source == feed.SYNTHETIC and bars["ts"].max() < as_of:
            raise ForecastRefused(
                f"the built-in market is continued over live.days={run.continued.days} sessions "
                f"past prepare's last bar, which ends before {as_of.date()}: raise live.days"
            )
        _refuse_stale(bars, as_of, calendar, settings.allow_stale)
        reports = _reports(store, brought.earnings, set(bars["symbol"]))
        known = known_reports(reports, as_of, settings.session)
        standing = _evening_forecast(store, as_of, settings.session)  # refused before writing
        # the new bars land first: the outcomes they complete are learnt before scoring
        store.upsert_many(_bars_and_reports(brought, known, fetched.source))
    with stage("forecast", "outcomes", seconds):
        learnt = learn_outcomes(store, scorers, as_of)
    with stage("forecast", "features", seconds):
        pending = due_before_open(reports, as_of)
        features = as_of_features(
            bars, known, as_of, settings.warmup_days, settings.max_days_since_earnings
        )
    with stage("forecast", "score", seconds):
        routed = route(features.rows, pending, settings.session)
        scored = score(scorers, features.rows, routed, pending, target, settings.session)
        forecast = _standing_forecast(standing, scored.forecasts)
    with stage("forecast", "book", seconds):
        previous, previous_day = _previous_book(store, as_of)
        book = None
        if len(forecast):
            book = next_book(
                forecast, previous, previous_day, bars, as_of,
                settings.rule, settings.capital, settings.costs,
            )  # fmt: skip
    day = Day(as_of, target, settings.session, brought, features, scored, forecast, book, seconds)
    day.learnt = learnt
    with stage("forecast", "write", seconds):
        day.written = _write(store, day, run_id, now)
    return day


def _bars_and_reports(brought: Update, known: pd.DataFrame, source: str) -> dict[str, pd.DataFrame]:
    """The new bars, and the source's reports that are out at the run."""
    fetched = brought.earnings[["symbol", "ts"]].assign(ts=lambda f: pd.to_datetime(f["ts"]))
    reports = known.merge(fetched, on=["symbol", "ts"]).assign(source=source)
    frames = {"ohlcv": brought.bars.assign(source=source), "earnings": reports}
    return {name: frame for name, frame in frames.items() if len(frame)}


def learn_outcomes(store: Store, scorers: Scorers, as_of: pd.Timestamp) -> dict[str, int]:
    """What the monitor does with each served version's logged predictions made before
    `as_of` whose next close is now stored: their actuals filled and, for a version with an
    online calibration, its state advanced by the days it has not used yet (each day once, in
    date order), so that the as-of answers carry the interval those outcomes correct. Returns
    the days learnt per version."""
    from nextday.monitoring import calibration
    from nextday.monitoring.actuals import fill_actuals
    from nextday.uncertainty.stored_state import read_state

    learnt: dict[str, int] = {}
    for inference in scorers.models.values():
        name, version = inference.name, inference.version  # type: ignore[attr-defined]
        online = inference.online  # type: ignore[attr-defined]
        state = read_state(store, name, version) if online is not None else None
        since = pd.Timestamp(state.through) if state is not None and state.through else None
        if online is None:  # only the actuals: those the newest bars can complete
            since = as_of - pd.Timedelta(days=15)
        where = "model_name = :name and model_version = :version and ts < :as_of"
        params = {"name": name, "version": version, "as_of": as_of.date()}
        if since is not None:
            where, params = where + " and ts > :since", params | {"since": since.date()}
        logged = store.read("model_predictions", where, params)
        if logged.empty:
            continue
        known = fill_actuals(store, logged)
        vol = calibration.prediction_volatility(store, known)
        advanced = calibration.record(store, known, vol, online, name, version)
        learnt[name] = advanced.days if advanced is not None else 0
    return learnt


def _write(store: Store, day: Day, run_id: str | None, now) -> dict[str, int]:
    """The day's features, forecasts, answers, book and run row, in one transaction."""
    created = pd.Timestamp(now).tz_convert(None).floor("s") if pd.Timestamp(now).tzinfo else now
    feature_columns = [c.name for c in feature_history_table.columns]
    frames = {
        "feature_history": day.features.rows[feature_columns],
        "forecasts": day.scored.forecasts.assign(created_at=created),
        "model_predictions": _new_predictions(store, day.scored.predictions, created),
        "forecast_runs": pd.DataFrame(
            [
                {
                    "as_of": day.as_of,
                    "session": day.session,
                    "target_date": day.target,
                    "symbols": len(day.forecast),
                    "skipped": len(day.skipped),
                    "book_day": day.book.day if day.book else None,
                    "run_id": run_id,
                    "created_at": created,
                }
            ]
        ),
    }
    replace = {}
    if day.book is not None:
        frames["positions"] = day.book.positions
        replace["positions"] = {"as_of": day.as_of}
    frames = {name: frame for name, frame in frames.items() if len(frame)}
    return store.upsert_many(frames, replace=replace)


def _new_predictions(store: Store, rows: pd.DataFrame, created) -> pd.DataFrame:
    """The prediction log's rows not logged yet: a rerun of a day logs no answer twice (the
    first answer of a version for a symbol and day stands, with its actual once filled)."""
    if rows.empty:
        return rows
    day = pd.Timestamp(rows["ts"].min()).date()
    logged = store.read(
        "model_predictions",
        "ts >= :day and ts <= :last",
        {"day": day, "last": pd.Timestamp(rows["ts"].max()).date()},
    )
    key = ["symbol", "ts", "model_name", "model_version"]
    rows = rows.assign(ts=pd.to_datetime(rows["ts"]), created_at=created)
    if logged.empty:
        return rows
    logged = logged.assign(ts=pd.to_datetime(logged["ts"]).dt.normalize())[key]
    merged = rows.merge(logged.assign(_logged=True), on=key, how="left")
    return rows[merged["_logged"].isna().to_numpy()]


def _refuse_stale(
    bars: pd.DataFrame, as_of: pd.Timestamp, calendar: TradingCalendar, allow: bool
) -> None:
    newest = pd.to_datetime(bars["ts"]).max() if len(bars) else None
    if newest is not None and newest >= as_of:
        return
    behind = "no bars" if newest is None else f"the newest bar is of {newest.date()}"
    if newest is not None and allow:
        log.warning(
            "forecast: stale data (%s, as-of %s): forecast.allow_stale", behind, as_of.date()
        )
        return
    missed = 0 if newest is None else len(calendar.sessions(newest + pd.Timedelta(days=1), as_of))
    raise ForecastRefused(
        f"stale data: {behind}, {missed} session(s) before the as-of session {as_of.date()} "
        "(the source has not delivered it yet); nothing was written. Run again once it has, "
        "backfill with forecast.as_of=YYYY-MM-DD, or set forecast.allow_stale=true"
    )


def _window_start(calendar: TradingCalendar, as_of: pd.Timestamp, sessions: int) -> pd.Timestamp:
    """The first of the `sessions` sessions up to `as_of`."""
    span = calendar.sessions(as_of - pd.Timedelta(days=int(sessions * 1.6) + 30), as_of)
    return span[-sessions] if len(span) >= sessions else span[0]


def _sessions_back(calendar: TradingCalendar, day: pd.Timestamp, sessions: int) -> pd.Timestamp:
    """The session `sessions` sessions before `day` (the overlap's first)."""
    span = calendar.sessions(day - pd.Timedelta(days=2 * sessions + 15), day)
    return span[-(sessions + 1)] if len(span) > sessions else span[0]


def _stored_bars(store: Store, sources, first, last) -> pd.DataFrame:
    marks = ", ".join(f":s{i}" for i in range(len(sources)))
    params = {f"s{i}": s for i, s in enumerate(sources)} | {
        "first": pd.Timestamp(first).date(),
        "last": pd.Timestamp(last).date(),
    }
    bars = store.read("ohlcv", f"source IN ({marks}) and ts >= :first and ts <= :last", params)
    return bars.assign(ts=pd.to_datetime(bars["ts"]).dt.normalize())


def _newest_bar(store: Store, sources) -> pd.Timestamp | None:
    marks = ", ".join(f":s{i}" for i in range(len(sources)))
    with store.engine.connect() as connection:
        newest = connection.execute(
            sa.text(f"SELECT MAX(ts) FROM ohlcv WHERE source IN ({marks})"),
            {f"s{i}": s for i, s in enumerate(sources)},
        ).scalar()
    return None if newest is None else pd.Timestamp(newest)


def _reports(store: Store, fetched: pd.DataFrame, symbols: set[str]) -> pd.DataFrame:
    """The stored reports of `symbols` with the source's (which win on the same key)."""
    stored = store.read("earnings")
    stored = stored[stored["symbol"].isin(symbols)][EARNINGS_COLUMNS]
    both = pd.concat([stored, fetched[EARNINGS_COLUMNS]], ignore_index=True)
    both["ts"] = pd.to_datetime(both["ts"])
    both["session_date"] = pd.to_datetime(both["session_date"]).dt.normalize()
    return both.drop_duplicates(["symbol", "ts"], keep="last").reset_index(drop=True)


def _evening_forecast(store: Store, as_of: pd.Timestamp, session: str) -> pd.DataFrame | None:
    """For the pre-open run, the evening's forecast of the same close it revises (refused
    when there is none); None for the evening run."""
    if session == "evening":
        return None
    stored = store.read("forecasts", "as_of = :day", {"day": as_of.date()})
    if stored.empty:
        raise ForecastRefused(
            f"forecast.session=pre_open for {as_of.date()}: there is no evening forecast of that "
            "close to revise; run the evening forecast first"
        )
    return stored


def _standing_forecast(evening: pd.DataFrame | None, scored: pd.DataFrame) -> pd.DataFrame:
    """The as-of day's forecasts after this run: the evening's rows, or at the pre-open run
    the evening's with the rescored symbols replaced."""
    if evening is None:
        return scored
    kept = evening[~evening["symbol"].isin(set(scored["symbol"]))] if len(scored) else evening
    return pd.concat([kept, scored], ignore_index=True).sort_values("symbol")


def _previous_book(store: Store, as_of: pd.Timestamp) -> tuple[pd.DataFrame, int | None]:
    """The positions held after the latest run before `as_of`, and that book's day."""
    runs = store.read("forecast_runs", "as_of < :day", {"day": as_of.date()})
    runs = runs[runs["book_day"].notna()]
    empty = pd.DataFrame({"symbol": pd.Series(dtype=object), "weight": pd.Series(dtype=float)})
    if runs.empty:
        return empty, None
    last = runs.sort_values(["as_of", "created_at"]).iloc[-1]
    held = store.read("positions", "as_of = :day", {"day": pd.Timestamp(last["as_of"]).date()})
    return (held if len(held) else empty), int(last["book_day"])


def _last_forecast(store: Store) -> pd.Timestamp | None:
    runs = store.read("forecast_runs", "session = :session", {"session": "evening"})
    return None if runs.empty else pd.Timestamp(pd.to_datetime(runs["as_of"]).max())


def schedule(store: Store, calendar: TradingCalendar, source: str) -> Schedule | None:
    """The daily run's schedule on this store (None: it never ran here)."""
    runs = store.read("forecast_runs", "session = :session", {"session": "evening"})
    if runs.empty:
        return None
    done = pd.DatetimeIndex(pd.to_datetime(runs["as_of"]).dt.normalize().unique())
    newest = _newest_bar(store, feed.stored_sources(source))
    last = done.max() if newest is None else max(done.max(), newest)
    missing = [day for day in calendar.sessions(done.min(), last) if day not in set(done)]
    return Schedule(pd.Timestamp(done.max()), missing)

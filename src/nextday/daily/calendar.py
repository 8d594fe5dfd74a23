"""Trading sessions from a maintained exchange calendar (exchange-calendars), not weekday
arithmetic: the session after a Friday or a pre-holiday close is the next one the exchange
opens, and a session counts as closed only once its close (early closes included) is past.

The built-in synthetic market trades every weekday (its generator's calendar), so its data
group names `weekdays` instead of an exchange.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

WEEKDAYS = "weekdays"
# how long after the close a session's bar counts as final (vendors settle the close late)
DEFAULT_SETTLE_MINUTES = 30


class CalendarError(ValueError):
    """A date the calendar cannot place (outside its range, or not a session)."""


@dataclass(frozen=True)
class TradingCalendar:
    """Sessions of one exchange (`XNYS`, ... as exchange-calendars names them) or `weekdays`."""

    name: str
    settle_minutes: int = DEFAULT_SETTLE_MINUTES

    def _exchange(self):
        import exchange_calendars

        try:
            return exchange_calendars.get_calendar(self.name)
        except exchange_calendars.errors.InvalidCalendarName as error:
            raise CalendarError(
                f"forecast.exchange={self.name!r} is not an exchange-calendars name "
                f"(XNYS, XNAS, XLON, ...) nor {WEEKDAYS!r}"
            ) from error

    def sessions(self, first, last) -> pd.DatetimeIndex:
        """The sessions from `first` to `last`, both included (dates at midnight)."""
        first, last = _day(first), _day(last)
        if self.name == WEEKDAYS:
            return pd.bdate_range(first, last)
        calendar = self._exchange()
        first = max(first, calendar.first_session)
        if last < first:
            return pd.DatetimeIndex([])
        last = min(last, calendar.last_session)
        return pd.DatetimeIndex(calendar.sessions_in_range(first, last)).tz_localize(None)

    def is_session(self, day) -> bool:
        day = _day(day)
        return bool(len(self.sessions(day, day)))

    def next_session(self, day) -> pd.Timestamp:
        """The first session after `day` (a session or not)."""
        day = _day(day)
        found = self.sessions(day + pd.Timedelta(days=1), day + pd.Timedelta(days=15))
        if not len(found):
            raise CalendarError(f"{self.name}: no session within 15 days after {day.date()}")
        return found[0]

    def previous_session(self, day) -> pd.Timestamp:
        """The last session before `day`."""
        day = _day(day)
        found = self.sessions(day - pd.Timedelta(days=15), day - pd.Timedelta(days=1))
        if not len(found):
            raise CalendarError(f"{self.name}: no session within 15 days before {day.date()}")
        return found[-1]

    def close_time(self, session) -> pd.Timestamp:
        """When `session`'s bar is final: its close (UTC) plus `settle_minutes`. Weekdays
        close at 16:00 New York time."""
        session = _day(session)
        if self.name == WEEKDAYS:
            close = pd.Timestamp(session.date()).tz_localize("America/New_York") + pd.Timedelta(
                hours=16
            )
        else:
            calendar = self._exchange()
            if not calendar.is_session(session):
                raise CalendarError(f"{session.date()} is not a {self.name} session")
            close = calendar.session_close(session)
        return close.tz_convert("UTC") + pd.Timedelta(minutes=self.settle_minutes)

    def last_closed(self, now: pd.Timestamp) -> pd.Timestamp:
        """The newest session whose bar is final at `now` (tz-aware)."""
        today = pd.Timestamp(now.tz_convert("America/New_York").date())
        for day in reversed(self.sessions(today - pd.Timedelta(days=15), today)):
            if self.close_time(day) <= now:
                return day
        raise CalendarError(f"{self.name}: no closed session in the 15 days before {now}")


def _day(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_localize(None)
    return stamp.normalize()

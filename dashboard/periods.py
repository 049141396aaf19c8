"""Reporting periods in whole local days (README: Definitions: periods follow the local calendar)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DEFAULT_DAYS = 7
MAX_DAYS = 366


class PeriodError(ValueError):
    """A period the user chose that cannot be shown; the message is user-facing."""


def today(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


def default_period(tz: str, now_day: date | None = None) -> tuple[date, date]:
    """The last seven whole local days: today is still running, so it is left out."""
    last = (now_day or today(tz)) - timedelta(days=1)
    return last - timedelta(days=DEFAULT_DAYS - 1), last


def parse_day(raw: object) -> date | None:
    if not isinstance(raw, str) or len(raw) < 10:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        return None


def parse_period(start: object, end: object) -> tuple[date, date]:
    """Both ends inclusive; raises PeriodError with a message for the page."""
    from dashboard.i18n import _

    day_from, day_to = parse_day(start), parse_day(end)
    if day_from is None or day_to is None or day_to < day_from:
        raise PeriodError(_("Choose a start and an end date, the start not after the end."))
    if (day_to - day_from).days + 1 > MAX_DAYS:
        raise PeriodError(_("Choose a period of at most %(days)s days.", days=MAX_DAYS))
    return day_from, day_to

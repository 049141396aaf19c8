"""The overview's period choices (today, this month, last month, custom) as whole local days."""

from __future__ import annotations

from datetime import date, timedelta

from dashboard.periods import parse_period

TODAY = "today"
THIS_MONTH = "month"
LAST_MONTH = "last_month"
CUSTOM = "custom"
CHOICES = (TODAY, THIS_MONTH, LAST_MONTH, CUSTOM)
DEFAULT = THIS_MONTH


def month_start(day: date) -> date:
    return day.replace(day=1)


def choose_period(choice: object, custom: object, now_day: date) -> tuple[date, date]:
    """Both ends inclusive, in the local calendar of ``now_day`` (today in PQMON_TZ).

    ``this month`` runs from the 1st to today (today is still running: the figures cover it up
    to now); ``last month`` is the whole previous calendar month; ``custom`` takes the
    [start, end] pair of a date range picker and raises PeriodError (user-facing) when it is
    incomplete or too long.
    """
    if choice == TODAY:
        return now_day, now_day
    if choice == LAST_MONTH:
        last = month_start(now_day) - timedelta(days=1)
        return month_start(last), last
    if choice == CUSTOM:
        pair = custom if isinstance(custom, list | tuple) else []
        start = pair[0] if len(pair) > 0 else None
        end = pair[1] if len(pair) > 1 else None
        return parse_period(start, end)
    return month_start(now_day), now_day

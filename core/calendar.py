"""Local-calendar days as UTC epoch-millisecond ranges (README: Definitions: periods local, storage UTC)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def day_start_ms(day: date, tz: str) -> int:
    return int(datetime.combine(day, time(0), ZoneInfo(tz)).timestamp() * 1000)


def day_range_ms(day_from: date, day_to: date, tz: str) -> tuple[int, int]:
    """[start of ``day_from``, start of the day after ``day_to``) in UTC ms; ``day_to`` inclusive."""
    if day_to < day_from:
        raise ValueError(f"--to {day_to} is before --from {day_from}")
    return day_start_ms(day_from, tz), day_start_ms(day_to + timedelta(days=1), tz)


def days_between(day_from: date, day_to: date) -> list[date]:
    return [day_from + timedelta(days=i) for i in range((day_to - day_from).days + 1)]


def local_day(ts_ms: int, tz: str) -> date:
    return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz)).date()

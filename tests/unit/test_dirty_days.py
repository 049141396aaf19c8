"""Which local days a stored reading changes (the worker recomputes exactly those)."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from collector.service import BUCKET_MS, local_days

TZ = "Asia/Shanghai"


def bucket(local: str) -> int:
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(TZ)).timestamp() * 1000) // BUCKET_MS


def test_a_reading_in_the_middle_of_a_day_changes_that_day_only():
    assert local_days({("A1", bucket("2026-03-10T12:00"))}, TZ) == {("A1", date(2026, 3, 10))}


def test_a_reading_in_the_last_hour_also_changes_the_next_day_its_window_reaches_into():
    # A 60-minute value that begins at 23:30 stands for 23:30-00:30.
    assert local_days({("A1", bucket("2026-03-10T23:30"))}, TZ) == {
        ("A1", date(2026, 3, 10)),
        ("A1", date(2026, 3, 11)),
    }
    assert local_days({("A1", bucket("2026-03-10T22:30"))}, TZ) == {("A1", date(2026, 3, 10))}

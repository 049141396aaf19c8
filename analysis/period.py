"""The part of a report period that a site was monitored for (README: Definitions).

RS-1 and coverage are ratios over time. Counting the days before a site was commissioned
as supplied time would let a meter installed in the last week of a month show RS-1 of
99.9 % on 22 % coverage, so a site's period starts at its commissioning date: the
registry's, or by default the first local day with any reading or event (the first day
the worker rolled up).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from core.calendar import day_range_ms, day_start_ms, local_day
from core.lineproto import quote_literal
from core.store import InfluxStore

FROM_REGISTRY = "registry"
FROM_FIRST_DATA = "first_data"


@dataclass(frozen=True)
class MonitoredPeriod:
    """[start_ms, end_ms) of the report period inside the site's monitored life, cut at now."""

    requested_from: date
    requested_to: date
    first_day: date | None  # None: the site was not monitored at all in the period
    last_day: date | None
    start_ms: int
    end_ms: int
    commissioned: date | None
    commissioned_from: str | None  # "registry", "first_data", or None when unknown

    @property
    def seconds(self) -> float:
        return max(0, self.end_ms - self.start_ms) / 1000.0

    @property
    def days(self) -> int:
        if self.first_day is None or self.last_day is None:
            return 0
        return (self.last_day - self.first_day).days + 1

    def as_dict(self) -> dict[str, Any]:
        """What the report says about the days it covers."""
        return {
            "from": self.first_day.isoformat() if self.first_day else None,
            "to": self.last_day.isoformat() if self.last_day else None,
            "days": self.days,
            "commissioned": self.commissioned.isoformat() if self.commissioned else None,
            "commissioned_from": self.commissioned_from,
        }


def rows_in(df: Any, period: MonitoredPeriod) -> Any:
    """The daily roll-up rows (a DataFrame with ``time`` in UTC ms) inside the period."""
    if df.empty or "time" not in df:
        return df
    return df[(df["time"] >= period.start_ms) & (df["time"] < period.end_ms)]


def monitored_period(
    commissioned: date | None,
    commissioned_from: str | None,
    day_from: date,
    day_to: date,
    tz: str,
    now_ms: int,
) -> MonitoredPeriod:
    """Pure: the requested whole local days, from commissioning on, up to now."""
    req_start, req_end = day_range_ms(day_from, day_to, tz)
    empty = MonitoredPeriod(
        day_from, day_to, None, None, req_start, req_start, commissioned, commissioned_from
    )
    if commissioned is None or commissioned > day_to:
        return empty
    first = max(day_from, commissioned)
    start_ms = day_start_ms(first, tz)
    end_ms = min(req_end, now_ms)
    if end_ms <= start_ms:
        return empty
    last = min(day_to, local_day(end_ms - 1, tz))
    return MonitoredPeriod(day_from, day_to, first, last, start_ms, end_ms, commissioned, commissioned_from)


def first_data_days(store: InfluxStore, tz: str, site_ids: Iterable[str] | None = None) -> dict[str, date]:
    """The first local day each site has a roll-up for: its first reading or event.

    One grouped query over the small daily series, never a scan of raw data.
    """
    where = "phase = 'all'"
    ids = list(site_ids) if site_ids is not None else None
    if ids is not None and len(ids) == 1:
        where += f" AND site = {quote_literal(ids[0])}"
    found: dict[str, date] = {}
    for df in store.query(f"SELECT first(calendar_min) FROM vq_daily WHERE {where} GROUP BY site"):
        site = df.attrs["tags"].get("site")
        if site and len(df) and (ids is None or site in ids):
            found[site] = local_day(int(df["time"].iloc[0]), tz)
    return found


def commissioning(registry_date: date | None, first_data: date | None) -> tuple[date | None, str | None]:
    """The registry's date wins; else the first day with data; else unknown."""
    if registry_date is not None:
        return registry_date, FROM_REGISTRY
    if first_data is not None:
        return first_data, FROM_FIRST_DATA
    return None, None


def site_periods(
    store: InfluxStore,
    sites: Iterable[Any],
    day_from: date,
    day_to: date,
    tz: str,
    now_ms: int,
) -> dict[str, MonitoredPeriod]:
    """Every given registry site's monitored period (``sites``: objects with id, commissioned)."""
    sites = list(sites)
    first = first_data_days(store, tz, [s.id for s in sites])
    out = {}
    for site in sites:
        when, how = commissioning(site.commissioned, first.get(site.id))
        out[site.id] = monitored_period(when, how, day_from, day_to, tz, now_ms)
    return out


__all__ = [
    "MonitoredPeriod",
    "monitored_period",
    "first_data_days",
    "commissioning",
    "site_periods",
    "rows_in",
]

"""The analysis worker: reads raw data per site, rolls it up, writes the derived series.

Thin I/O around :mod:`analysis.rollup`. Each pass recomputes, for every site, the local
days from its first data inside the look-back window up to today, so late data is taken
in on the next pass and a recomputation overwrites (never adds to) what was there.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, timedelta

import pandas as pd

from analysis.calendar import day_start_ms, days_between, local_day
from analysis.limits import validate_limits
from analysis.rollup import VOLTAGE_FIELDS, RollupPolicy, SiteRollup, SiteSpec, rollup_site
from core.lineproto import line, quote_literal
from core.registry import Registry, Site
from core.settings import Settings
from core.store import InfluxStore

log = logging.getLogger(__name__)

EVENT_LOOKBEHIND_MS = 7 * 86_400_000  # a power_off this long before the window still counts
READING_LOOKBEHIND_MS = 3_600_000  # a 15- or 60-minute value that began before midnight


@dataclass(frozen=True)
class PassResult:
    sites: int
    days: int
    points: int
    seconds: float


def site_spec(site: Site) -> tuple[SiteSpec, str] | None:
    """The site's qualification spec and the meter it is judged on (the first by id)."""
    if not site.meters:
        return None
    primary = sorted(site.meters, key=lambda m: m.meter_id)[0]
    limits = validate_limits(site.voltage_class_kv, site.phases, site.upper_pct, site.lower_pct)
    return SiteSpec(site.id, site.phases, primary.nominal_v, limits), primary.meter_id


def _first_times(store: InfluxStore, since_ms: int) -> dict[str, int]:
    """Earliest reading or event per site since ``since_ms``: where each site's window begins."""
    first: dict[str, int] = {}
    for q in (
        f"SELECT first(interval_s) FROM reading WHERE time >= {since_ms}ms GROUP BY site",
        f"SELECT first(event_id) FROM event WHERE time >= {since_ms}ms GROUP BY site",
    ):
        for df in store.query(q):
            site = df.attrs["tags"].get("site")
            if site and len(df):
                ts = int(df["time"].iloc[0])
                first[site] = min(ts, first.get(site, ts))
    return first


def read_site(
    store: InfluxStore, site: Site, meter_id: str, start_ms: int, end_ms: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    fields = ", ".join(f'"{f}"' for f in (*VOLTAGE_FIELDS, "interval_s"))
    readings = store.query_frame(
        f"SELECT {fields} FROM reading WHERE site = {quote_literal(site.id)}"
        f" AND meter = {quote_literal(meter_id)}"
        f" AND time >= {start_ms - READING_LOOKBEHIND_MS}ms AND time < {end_ms}ms"
    )
    events = store.query_frame(
        f'SELECT "event_id", "type" FROM event WHERE site = {quote_literal(site.id)}'
        f" AND time >= {start_ms - EVENT_LOOKBEHIND_MS}ms"
    )
    if events.empty:
        events = pd.DataFrame({"time": [], "type": [], "event_id": []})
    if readings.empty:
        readings = pd.DataFrame({"time": pd.Series([], dtype="int64")})
    return readings, events


def to_lines(site: Site, result: SiteRollup) -> list[str]:
    lines: list[str] = []
    for row in result.vq.to_dict("records"):
        fields = {k: v for k, v in row.items() if k not in ("day_ms", "phase") and not pd.isna(v)}
        lines.append(line("vq_daily", {"site": site.id, "phase": str(row["phase"])}, fields, int(row["day_ms"])))
    for row in result.rel.to_dict("records"):
        fields = {k: v for k, v in row.items() if k != "day_ms"}
        lines.append(line("rel_daily", {"site": site.id}, fields, int(row["day_ms"])))
    return lines


def outage_lines(site: Site, result: SiteRollup, short_s: float, now_ms: int) -> list[str]:
    return [
        line(
            "outage",
            {
                "site": site.id,
                "cause": o.cause,
                "length": "short" if o.is_short(short_s, now_ms) else "sustained",
            },
            {
                "start_ms": o.start_ms,
                "end_ms": o.end_or(now_ms),
                "duration_s": o.duration_s(now_ms),
                "open": o.is_open,
                "source": o.source,
            },
            o.start_ms,
        )
        for o in result.outages
    ]


def analyse_site(
    store: InfluxStore,
    registry: Registry,
    site: Site,
    days: list[date],
    policy: RollupPolicy,
    short_s: float,
    now_ms: int,
) -> int:
    found = site_spec(site)
    if found is None or not days:
        return 0
    spec, meter_id = found
    start_ms = day_start_ms(days[0], policy.tz)
    end_ms = day_start_ms(days[-1] + timedelta(days=1), policy.tz)
    readings, events = read_site(store, site, meter_id, start_ms, end_ms)
    planned = [
        (int(s.replace(tzinfo=UTC).timestamp() * 1000), int(e.replace(tzinfo=UTC).timestamp() * 1000))
        for s, e in registry.planned_outages(site.id)
    ]
    result = rollup_site(spec, readings, events, days, policy, now_ms, planned)
    # Outages are keyed by start time and tags that can change (short -> sustained, open ->
    # closed), so the window's derived outages are replaced rather than overwritten.
    store.query_raw(
        f"DELETE FROM outage WHERE site = {quote_literal(site.id)}"
        f" AND time >= {start_ms}ms AND time < {end_ms}ms"
    )
    lines = to_lines(site, result) + outage_lines(site, result, short_s, now_ms)
    return store.write(lines)


def run_once(
    settings: Settings,
    store: InfluxStore,
    registry: Registry,
    now_ms: int | None = None,
) -> PassResult:
    """One full analysis pass over every registered site."""
    began = time.monotonic()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    policy = RollupPolicy(settings.tz, settings.short_outage_s, settings.outage_as_under)
    today = local_day(now_ms, settings.tz)
    since = day_start_ms(today - timedelta(days=settings.lookback_days), settings.tz)
    first = _first_times(store, since)
    sites = {s.id: s for s in registry.sites()}
    n_sites = n_days = n_points = 0
    for site_id, first_ms in sorted(first.items()):
        site = sites.get(site_id)
        if site is None:
            continue
        days = days_between(local_day(first_ms, settings.tz), today)
        n_points += analyse_site(store, registry, site, days, policy, settings.short_outage_s, now_ms)
        n_sites += 1
        n_days += len(days)
    result = PassResult(n_sites, n_days, n_points, time.monotonic() - began)
    log.info(
        "analysis pass: %d sites, %d site-days, %d points written in %.1fs",
        result.sites, result.days, result.points, result.seconds,
    )
    return result


def run_forever(settings: Settings, stop: threading.Event) -> None:
    store = InfluxStore.from_settings(settings)
    registry = Registry(settings.registry_url)
    try:
        while not stop.is_set():
            try:
                run_once(settings, store, registry)
            except Exception:  # one bad pass must not end the worker; the next one retries
                log.exception("analysis pass failed; retrying in %ss", settings.worker_interval_s)
            stop.wait(settings.worker_interval_s)
    finally:
        store.close()
        registry.close()



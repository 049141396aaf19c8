"""The analysis worker: reads raw data per site, rolls it up, writes the derived series.

Thin I/O around :mod:`analysis.rollup`. The first pass (or ``--full``) computes every day
with data inside the look-back window. Later passes are incremental: they recompute the
days the collector marked dirty (late data), the days still in progress at the previous
pass, the days of outages that are still open, and every day of a site seen for the first
time. A window grows until it holds, whole, every outage that touches it: those found now
and those stored before, which the recomputation may remove, shorten, split or move. So
after the passes that follow the data, the derived rows equal what ``--full`` writes.
Nothing is deleted: rows and outage points are overwritten in place, and an outage that
is no longer found is marked ``valid=false`` (see :func:`withdrawn_lines`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from analysis.pq_daily import PQ_EVENT_FIELDS, PQ_READING_FIELDS, pq_daily_columns
from analysis.rollup import VOLTAGE_FIELDS, RollupPolicy, SiteRollup, SiteSpec, rollup_site
from core.calendar import day_start_ms, days_between, local_day
from core.claims import Claim, LeaseKeeper, Mark, WorkQueue, worker_id
from core.limits import validate_limits
from core.lineproto import check_ident, line, quote_literal
from core.registry import Registry, Site
from core.settings import Settings
from core.store import InfluxStore
from reports.archive import Archiver, mark_stale, mark_stale_many

log = logging.getLogger(__name__)

EVENT_LOOKBEHIND_MS = 7 * 86_400_000  # a power_off this long before the window still counts
READING_LOOKBEHIND_MS = 3_600_000  # a 15- or 60-minute value that began before midnight
LAST_PASS_KEY = "worker.last_pass_ms"
NOT_STORED = ("day_ms", "phase", "vqr_pct")
MAX_WINDOW_GROWTH = 8
MAX_OUTAGE_DAYS = 30  # an outage that began this long before the look-back can still reach into it
CLAIM_BATCH = 8  # sites one claim statement takes (PostgreSQL): few, so a killed worker strands few
# Sites whose raw data one query reads (run_once), grouped by site, and the minutes a chunk
# may read at most (sites x its span). Small enough that a pass holds little (two chunks: one
# computed, one read ahead), so its memory is the same at 500 sites as at 50,000; InfluxDB
# serves 100-site chunks as fast per row as 400-site ones (measured: bench/live_pass_bench.py).
CHUNK_SITES = 100
CHUNK_POINTS = 150_000
WRITE_LINES = 50_000  # derived points per /write
# Points collected before they go to the writer: enough for an efficient write (~1 MB), few
# enough that what waits in memory does not grow with the fleet (50,000 held 40 MB at 10,000 sites).
FLUSH_LINES = 5_000
_worker_ids: dict[int, str] = {}


@dataclass(frozen=True)
class PassResult:
    sites: int
    days: int
    points: int
    seconds: float
    full: bool


def site_spec(site: Site) -> tuple[SiteSpec, str] | None:
    """The site's qualification spec and the meter it is judged on (the first by id)."""
    if not site.meters:
        return None
    primary = sorted(site.meters, key=lambda m: m.meter_id)[0]
    limits = validate_limits(site.voltage_class_kv, site.phases, site.upper_pct, site.lower_pct)
    return SiteSpec(site.id, site.phases, primary.nominal_v, limits), primary.meter_id


def _series(store: InfluxStore, q: str) -> Iterator[tuple[dict[str, str], list[str], list[list[Any]]]]:
    """(tags, columns, rows) of each series of a GROUP BY answer: for the plan's fleet-wide
    queries, whose thousands of small series are read faster without a DataFrame each."""
    for result in store.query_raw(q):
        for series in result.get("series", []):
            yield series.get("tags") or {}, series["columns"], series.get("values") or []


def _first_times(store: InfluxStore, since_ms: int) -> dict[str, int]:
    """Earliest reading or event per site since ``since_ms``: where each site's window begins."""
    first: dict[str, int] = {}
    for q in (
        f"SELECT first(interval_s) FROM reading WHERE time >= {since_ms}ms GROUP BY site",
        f"SELECT first(event_id) FROM event WHERE time >= {since_ms}ms GROUP BY site",
    ):
        for tags, _, rows in _series(store, q):
            site = tags.get("site")
            if site and rows:
                ts = int(rows[0][0])
                first[site] = min(ts, first.get(site, ts))
    return first


def read_site(
    store: InfluxStore, site: Site, meter_id: str, start_ms: int, end_ms: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    fields = ", ".join(f'"{f}"' for f in (*VOLTAGE_FIELDS, "interval_s", *PQ_READING_FIELDS))
    readings = store.query_csv(
        f"SELECT {fields} FROM reading WHERE site = {quote_literal(site.id)}"
        f" AND meter = {quote_literal(meter_id)}"
        f" AND time >= {start_ms - READING_LOOKBEHIND_MS}ms AND time < {end_ms}ms"
    )
    events = store.query_csv(
        f'SELECT "event_id", "type", {", ".join(PQ_EVENT_FIELDS)} FROM event'
        f" WHERE site = {quote_literal(site.id)}"
        f" AND time >= {start_ms - EVENT_LOOKBEHIND_MS}ms"
    )
    if events.empty:
        events = pd.DataFrame({"time": pd.Series([], dtype="int64"), "type": [], "event_id": []})
    if readings.empty:
        readings = pd.DataFrame({"time": pd.Series([], dtype="int64")})
    return readings, events


def _site_regex(site_ids: Iterable[str]) -> str:
    """An InfluxQL regex matching exactly these (validated) site ids."""
    return "/^(" + "|".join(check_ident(s, "site id").replace(".", "\\.") for s in site_ids) + ")$/"


def _blocks(df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Rows of a ``GROUP BY`` CSV answer per series (its ``tags`` text): contiguous (first, end)."""
    if df.empty:
        return {}
    tags = df["tags"].to_numpy()
    cuts = [0, *(np.flatnonzero(tags[1:] != tags[:-1]) + 1).tolist(), len(tags)]
    return {str(tags[a]): (a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)}


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="int64"), "type": [], "event_id": []})


def _empty_readings() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="int64")})


class ChunkData:
    """The raw data of a chunk of sites, read with one query per measurement (:func:`read_chunk`).

    Serves :func:`read_site`'s answer for any window it covers (``None`` for one it does not),
    as frames that the roll-ups read alike: the same rows, times and values. Built cheaply, as
    building a wide frame per site costs more than rolling it up: the readings' fields are one
    float block sliced per site, and a field with no value in a site's rows is left out, as the
    roll-ups treat a missing column and one without values the same (``name`` and ``tags``,
    constant for one site, are left out too).
    """

    def __init__(
        self, readings: pd.DataFrame, events: pd.DataFrame, reading_span: tuple[int, int], events_from_ms: int
    ) -> None:
        self.readings_from_ms, self.readings_to_ms = reading_span
        self.events_from_ms = events_from_ms
        self.reading_blocks = _blocks(readings)
        self.event_blocks = _blocks(events)
        self.times = readings["time"].to_numpy(np.int64) if len(readings) else np.zeros(0, np.int64)
        self.fields = [c for c in readings.columns if c not in ("name", "tags", "time")]
        self.values: np.ndarray | None = None
        self.readings: pd.DataFrame | None = None
        try:
            self.values = readings[self.fields].to_numpy(np.float64) if len(readings) else None
        except (TypeError, ValueError):  # a field that is not a number: sliced as it is
            self.readings = readings
        self.events = events
        self.event_times = events["time"].to_numpy(np.int64) if len(events) else np.zeros(0, np.int64)
        self.no_events = _empty_events()  # one for every site without events: the roll-ups only read it

    def site(
        self, site_id: str, meter_id: str, start_ms: int, end_ms: int
    ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        r_from, e_from = start_ms - READING_LOOKBEHIND_MS, start_ms - EVENT_LOOKBEHIND_MS
        if r_from < self.readings_from_ms or end_ms > self.readings_to_ms or e_from < self.events_from_ms:
            return None
        readings = None
        block = self.reading_blocks.get(f"meter={meter_id},site={site_id}")
        if block is not None:
            a, b = _rows(self.times, block, r_from, end_ms)
            if b > a:
                readings = self._readings(a, b)
        events = self.no_events
        block = self.event_blocks.get(f"site={site_id}")
        if block is not None:
            a, b = _rows(self.event_times, block, e_from, None)
            if b > a:
                events = pd.DataFrame(
                    {c: self.events[c].array[a:b] for c in self.events.columns if c not in ("name", "tags")},
                    copy=False,
                )
        return (_empty_readings() if readings is None else readings), events

    def _readings(self, a: int, b: int) -> pd.DataFrame:
        if self.values is None:
            assert self.readings is not None
            cols = [c for c in self.readings.columns if c not in ("name", "tags")]
            return pd.DataFrame({c: self.readings[c].array[a:b] for c in cols}, copy=False)
        values = self.values[a:b]
        keep = ~np.isnan(values).all(axis=0)
        # One float block, times included (exact below 2**53 ms): a frame of one block is built
        # in half the time of one with an int64 column beside it, and readers take times as int64.
        block = np.column_stack((self.times[a:b].astype(np.float64), values[:, keep]))
        names = ["time", *(f for f, k in zip(self.fields, keep, strict=True) if k)]
        return pd.DataFrame(block, columns=names, copy=False)


def _rows(times: np.ndarray, block: tuple[int, int], from_ms: int, to_ms: int | None) -> tuple[int, int]:
    """The rows of a series' block (sorted by time) in [from_ms, to_ms)."""
    lo, hi = block
    part = times[lo:hi]
    a = lo + int(np.searchsorted(part, from_ms, side="left"))
    b = hi if to_ms is None else lo + int(np.searchsorted(part, to_ms, side="left"))
    return a, b


def read_chunk(
    store: InfluxStore, sites: list[tuple[str, str]], start_ms: int, end_ms: int, events_from_ms: int
) -> ChunkData:
    """Readings of each (site, meter) in [start_ms - look-behind, end_ms) and events of each site
    since ``events_from_ms``: one query per measurement for the whole chunk, grouped by series."""
    fields = ", ".join(f'"{f}"' for f in (*VOLTAGE_FIELDS, "interval_s", *PQ_READING_FIELDS))
    site_re = _site_regex(sorted({s for s, _ in sites}))
    meter_re = _site_regex(sorted({m for _, m in sites}))
    r_from = start_ms - READING_LOOKBEHIND_MS
    readings = store.query_csv(
        f"SELECT {fields} FROM reading WHERE site =~ {site_re} AND meter =~ {meter_re}"
        f" AND time >= {r_from}ms AND time < {end_ms}ms GROUP BY site, meter"
    )
    events = store.query_csv(
        f'SELECT "event_id", "type", {", ".join(PQ_EVENT_FIELDS)} FROM event'
        f" WHERE site =~ {site_re} AND time >= {events_from_ms}ms GROUP BY site"
    )
    return ChunkData(readings, events, (r_from, end_ms), events_from_ms)


def _given(v: object) -> bool:
    """Not None and not NaN: a value a point can carry."""
    return v is not None and v == v


def to_lines(site: Site, result: SiteRollup) -> list[str]:
    lines: list[str] = []
    for row in result.vq_rows:
        # Rates are not stored: a month's rate is pooled from the minute counts, and a day's rate
        # can become undefined on recomputation, which InfluxDB could only forget by a DELETE.
        fields = {k: v for k, v in row.items() if k not in NOT_STORED and _given(v)}
        lines.append(
            line("vq_daily", {"site": site.id, "phase": str(row["phase"])}, fields, int(row["day_ms"]))
        )
    for row in result.rel_rows:
        fields = {k: v for k, v in row.items() if k != "day_ms"}
        lines.append(line("rel_daily", {"site": site.id}, fields, int(row["day_ms"])))
    return lines


def pq_lines(site: Site, pq: Mapping[str, np.ndarray] | pd.DataFrame) -> list[str]:
    """``pq``: :func:`pq_daily_columns` (or its DataFrame), one point per day that has a value."""
    columns = {str(k): np.asarray(v).tolist() for k, v in pq.items()}
    days = columns.pop("day_ms")
    names = list(columns)
    lines = []
    for i, day_ms in enumerate(days):
        fields = {k: columns[k][i] for k in names if _given(columns[k][i])}
        if fields:
            lines.append(line("pq_daily", {"site": site.id}, fields, int(day_ms)))
    return lines


def outage_lines(site: Site, result: SiteRollup, short_s: float, now_ms: int) -> list[str]:
    """One point per outage, keyed by site and start time only, so that a recomputation
    overwrites it in place whatever changed (cause, length, end); ``valid`` marks it current."""
    return [
        line(
            "outage",
            {"site": site.id},
            {
                "start_ms": o.start_ms,
                "end_ms": o.end_or(now_ms),
                "duration_s": o.duration_s(now_ms),
                "open": o.is_open,
                "cause": o.cause,
                "length": "short" if o.is_short(short_s, now_ms) else "sustained",
                "source": o.source,
                "start_source": o.start_source,
                "end_source": o.end_source or "",  # empty while open
                "valid": True,
            },
            o.start_ms,
        )
        for o in result.outages
    ]


def withdrawn_lines(site: Site, starts_ms: Iterable[int]) -> list[str]:
    """Outages a recomputation no longer finds: marked not valid where they stood.

    Not deleted: InfluxDB 1.6 can drop a series that was emptied by a DELETE and written
    again when a later DELETE matches another series (found by the property test), and
    DELETE is not served by the v1 API of InfluxDB 2.x and 3.x at all.
    """
    return [line("outage", {"site": site.id}, {"valid": False}, start) for start in sorted(starts_ms)]


def _utc_ms(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=UTC).timestamp() * 1000)


def runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as (first, last) runs of consecutive days."""
    out: list[tuple[date, date]] = []
    for d in days:
        if out and d - out[-1][1] == timedelta(days=1):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


class Analyser:
    """One pass's I/O for one site at a time, so memory does not grow with the fleet."""

    def __init__(self, settings: Settings, store: InfluxStore, registry: Registry, now_ms: int) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.now_ms = now_ms
        self.policy = RollupPolicy(settings.tz, settings.short_outage_s, settings.outage_as_under)
        self.today = local_day(now_ms, settings.tz)
        self.horizon = self.today - timedelta(days=settings.lookback_days)
        self.planned = {
            site_id: [(_utc_ms(s), _utc_ms(e)) for s, e in windows]
            for site_id, windows in registry.all_planned_outages().items()
        }
        self._stored: dict[str, list[tuple[int, int]]] | None = None
        self._pending: list[str] | None = None  # points collected for one large write (flush)
        self._stale: list[tuple[str, list[date]]] = []
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future[None] | None = None

    def stored_outages(self) -> dict[str, list[tuple[int, int]]]:
        """The derived outages already stored, per site, as (start, end or now) spans.

        Read once per pass: a recomputation must cover every day that a stored outage it
        may remove, shorten or move covers, or those days would keep the old figures.
        """
        if self._stored is None:
            self._stored = self._read_stored()
        return self._stored

    def _read_stored(self, site_ids: Sequence[str] | None = None) -> dict[str, list[tuple[int, int]]]:
        """Stored outages of these sites (default: the fleet's), per site."""
        if site_ids is not None and not site_ids:
            return {}
        since = day_start_ms(self.horizon - timedelta(days=MAX_OUTAGE_DAYS), self.settings.tz)
        of_site = f" AND site =~ {_site_regex(sorted(site_ids))}" if site_ids is not None else ""
        stored: dict[str, list[tuple[int, int]]] = {}
        for tags, columns, rows in _series(
            self.store,
            'SELECT start_ms, end_ms, "open" FROM outage'
            f' WHERE "valid" = true{of_site} AND time >= {since}ms GROUP BY site',
        ):
            start, end, is_open = (columns.index(c) for c in ("start_ms", "end_ms", "open"))
            stored[tags["site"]] = [(int(r[start]), self.now_ms if r[is_open] else int(r[end])) for r in rows]
        return stored

    def refresh(self, site_ids: Sequence[str]) -> None:
        """Read these sites' planned windows and stored outages afresh, just before computing them.

        With several workers (core.claims) another one may have computed a site, or a planned
        window may have been registered, since this pass began: the computation must start
        from what is stored now, as a single worker's does from what it read at its start.
        One query for the stored outages of all of them.
        """
        for site_id in site_ids:
            self.planned[site_id] = [
                (_utc_ms(s), _utc_ms(e)) for s, e in self.registry.planned_outages(site_id)
            ]
        if self._stored is None:
            self._stored = {}
        stored = self._read_stored(site_ids)
        for site_id in site_ids:
            self._stored[site_id] = stored.get(site_id, [])

    def _grown(self, first: date, last: date, spans: Iterable[tuple[int, int]]) -> tuple[date, date]:
        """[first, last] widened to hold every span that touches it (touching counts)."""
        tz = self.settings.tz
        start_ms = day_start_ms(first, tz)
        end_ms = day_start_ms(last + timedelta(days=1), tz)
        touching = [(s, e) for s, e in spans if s <= end_ms and e >= start_ms]
        want_first = min([first, *(local_day(s, tz) for s, _ in touching)])
        want_last = max([last, *(local_day(max(s, e - 1), tz) for s, e in touching)])
        return max(want_first, self.horizon), min(want_last, self.today)

    def compute(
        self, site: Site, first: date, last: date, raw: ChunkData | None = None
    ) -> tuple[list[date], SiteRollup, dict[str, np.ndarray]] | None:
        """Roll up [first, last], growing the window until it holds every outage touching it,
        found now or stored before, so that the result equals a full recomputation.

        ``raw``: the site's chunk, read beforehand; a window it does not cover is read alone."""
        found_spec = site_spec(site)
        if found_spec is None:
            return None
        spec, meter_id = found_spec
        planned = self.planned.get(site.id, [])
        stored = self.stored_outages().get(site.id, [])
        tz = self.settings.tz
        for _ in range(MAX_WINDOW_GROWTH):
            while (grown := self._grown(first, last, stored)) != (first, last):
                first, last = grown
            days = days_between(first, last)
            start_ms = day_start_ms(first, tz)
            end_ms = day_start_ms(last + timedelta(days=1), tz)
            served = raw.site(site.id, meter_id, start_ms, end_ms) if raw is not None else None
            readings, events = served or read_site(self.store, site, meter_id, start_ms, end_ms)
            result = rollup_site(spec, readings, events, days, self.policy, self.now_ms, planned)
            grown = self._grown(first, last, [(o.start_ms, o.end_or(self.now_ms)) for o in result.found])
            if grown == (first, last):
                break
            first, last = grown
        else:
            log.warning("site %s: outages kept widening the window; computed %s..%s", site.id, first, last)
        return days, result, pq_daily_columns(readings, events, days, tz, site.voltage_class_kv)

    def write(self, site: Site, days: list[date], result: SiteRollup, pq: Mapping[str, np.ndarray]) -> int:
        tz = self.settings.tz
        start_ms = day_start_ms(days[0], tz)
        end_ms = day_start_ms(days[-1] + timedelta(days=1), tz)
        # Outages found now overwrite their points; stored ones in the window that are gone
        # (removed, moved, merged) are withdrawn. The window holds every one whole.
        stored = self.stored_outages()
        found = {o.start_ms for o in result.outages}
        gone = [s for s, _ in stored.get(site.id, []) if start_ms <= s < end_ms and s not in found]
        kept = [(s, e) for s, e in stored.get(site.id, []) if not start_ms <= s < end_ms]
        kept += [(o.start_ms, o.end_or(self.now_ms)) for o in result.outages]
        stored[site.id] = kept
        lines = to_lines(site, result)
        lines += outage_lines(site, result, self.settings.short_outage_s, self.now_ms)
        lines += withdrawn_lines(site, gone)
        lines += pq_lines(site, pq)
        if self._pending is not None:  # a chunk's points go in a few large writes (flush)
            self._pending.extend(lines)
            self._stale.append((site.id, days))
            return len(lines)
        written = self.store.write(lines)
        # After the write: a closed month's issued report is re-checked against these figures.
        mark_stale(self.registry, site.id, days, self.today)
        return written

    def buffer_writes(self) -> None:
        """From now on :meth:`write` collects the points; :meth:`flush` writes them in the
        background, so that InfluxDB takes them while the next chunk is computed."""
        if self._pending is None:
            self._pending = []
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="pqmon-writer")

    def flush(self, final: bool = False) -> None:
        """Hand the collected points to the writer once there are FLUSH_LINES (or all, ``final``);
        after their write the writer marks each site's rewritten months. One write in flight at
        a time, so what waits in memory stays bounded; a failed write fails the pass here."""
        pending = self._pending or []
        if not pending or (len(pending) < FLUSH_LINES and not final):
            return
        stale = self._stale
        self._pending, self._stale = [], []
        self._wait_for_write()
        assert self._writer is not None
        self._writing = self._writer.submit(self._write_out, pending, stale)

    def drain(self) -> None:
        """Write everything collected and wait for it: the pass is not done before its points are."""
        self.flush(final=True)
        self._wait_for_write()

    def close(self) -> None:
        """Stop the writer thread (after :meth:`drain`, or when the pass failed)."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _wait_for_write(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def _write_out(self, pending: list[str], stale: list[tuple[str, list[date]]]) -> None:
        for i in range(0, len(pending), WRITE_LINES):
            self.store.write(pending[i : i + WRITE_LINES])
        mark_stale_many(self.registry, stale, self.today)

    def window(self, site: Site, first: date, last: date) -> tuple[str, int, int] | None:
        """The site's meter and the span a first read of [first, last] covers (as :meth:`compute`)."""
        found_spec = site_spec(site)
        if found_spec is None:
            return None
        stored = self.stored_outages().get(site.id, [])
        while (grown := self._grown(first, last, stored)) != (first, last):
            first, last = grown
        tz = self.settings.tz
        return found_spec[1], day_start_ms(first, tz), day_start_ms(last + timedelta(days=1), tz)

    def chunks(
        self, work: list[tuple[Site, date, date]]
    ) -> Iterator[tuple[list[tuple[Site, date, date]], ChunkData | None]]:
        """The work in chunks of sites with like windows, each with its raw data read together:
        at most CHUNK_SITES sites and CHUNK_POINTS minutes (sites x the chunk's span) each."""
        windows = []
        for item in work:
            found = self.window(*item)
            if found is None:
                yield [item], None
            else:
                windows.append((found[1], found[2], item, found[0]))
        windows.sort(key=lambda w: (w[0], w[1], w[2][0].id))
        groups: list[tuple[list[tuple[int, int, tuple[Site, date, date], str]], int, int]] = []
        chunk: list[tuple[int, int, tuple[Site, date, date], str]] = []
        lo = hi = 0
        for w in windows:
            n_lo, n_hi = (min(lo, w[0]), max(hi, w[1])) if chunk else (w[0], w[1])
            minutes = (n_hi - n_lo + READING_LOOKBEHIND_MS) // 60_000
            if chunk and (len(chunk) >= CHUNK_SITES or (len(chunk) + 1) * minutes > CHUNK_POINTS):
                groups.append((chunk, lo, hi))
                chunk, n_lo, n_hi = [], w[0], w[1]
            chunk.append(w)
            lo, hi = n_lo, n_hi
        if chunk:
            groups.append((chunk, lo, hi))
        # The next chunk is read while this one is computed: InfluxDB serves it (on one core)
        # while the worker rolls up (on another). So at most two chunks are held at a time.
        with ThreadPoolExecutor(1, thread_name_prefix="pqmon-read-ahead") as pool:
            ahead = pool.submit(self._read_chunk, *groups[0]) if groups else None
            for k in range(1, len(groups) + 1):
                assert ahead is not None
                got = ahead.result()
                ahead = pool.submit(self._read_chunk, *groups[k]) if k < len(groups) else None
                yield got

    def _read_chunk(
        self, chunk: list[tuple[int, int, tuple[Site, date, date], str]], lo: int, hi: int
    ) -> tuple[list[tuple[Site, date, date]], ChunkData]:
        raw = read_chunk(self.store, [(w[2][0].id, w[3]) for w in chunk], lo, hi, lo - EVENT_LOOKBEHIND_MS)
        return [w[2] for w in chunk], raw

    def full_plan(self) -> dict[str, list[tuple[date, date]]]:
        since = day_start_ms(self.horizon, self.settings.tz)
        return {
            site: [(max(local_day(first_ms, self.settings.tz), self.horizon), self.today)]
            for site, first_ms in _first_times(self.store, since).items()
        }

    def incremental_plan(self, last_pass_ms: int) -> dict[str, list[tuple[date, date]]]:
        wanted: dict[str, set[date]] = {}
        for site, days in self.registry.dirty_days().items():
            wanted.setdefault(site, set()).update(d for d in days if self.horizon <= d <= self.today)
        in_progress = self.ended_since(last_pass_ms)
        with_rows = self.sites_with_rows()
        for site in with_rows:
            wanted.setdefault(site, set()).update(in_progress)
        # A site seen for the first time gets every day from its first data on, as a full pass
        # gives it: the days it was silent in between have rows too (all missing).
        for site, days in wanted.items():
            if site not in with_rows and days:
                days.update(days_between(min(days), self.today))
        for site, first_open in self.open_outage_days().items():
            wanted.setdefault(site, set()).update(days_between(first_open, self.today))
        return {site: runs(sorted(days)) for site, days in wanted.items() if days}

    def ended_since(self, last_pass_ms: int) -> list[date]:
        """Days that were still running at the previous pass and have ended since: finished now.

        Today itself needs no pass of its own: with no new data (which marks it dirty) only
        its elapsed time grows, and reports count that as missing from calendar_min.
        """
        tz = self.settings.tz
        return days_between(min(local_day(last_pass_ms, tz), self.today), self.today - timedelta(days=1))

    def sites_with_rows(self) -> set[str]:
        """Sites with a roll-up in the look-back window; any other site is new to the worker."""
        since = day_start_ms(self.horizon, self.settings.tz)
        return {
            tags["site"]
            for tags, _, _ in _series(
                self.store,
                "SELECT last(monitored_min) FROM vq_daily"
                f" WHERE phase = 'all' AND time >= {since}ms GROUP BY site",
            )
        }

    def open_outage_days(self) -> dict[str, date]:
        """Each site with an open outage, and the local day its first open outage began:
        from that day to today is recomputed by every pass, as the outage grows."""
        since = day_start_ms(self.horizon, self.settings.tz)
        return {
            tags["site"]: local_day(min(int(r[1]) for r in rows), self.settings.tz)
            for tags, _, rows in _series(
                self.store,
                f'SELECT start_ms FROM outage WHERE "open" = true AND "valid" = true AND time >= {since}ms'
                " GROUP BY site",
            )
            if rows
        }

    def catch_up_spans(self, last_pass_ms: int) -> dict[str, tuple[date, date]]:
        """What an incremental pass recomputes besides the dirty marks (days ended since the
        previous plan, open outages), as one span of days per site, for the claims to share."""
        spans: dict[str, tuple[date, date]] = {}
        ended = self.ended_since(last_pass_ms)
        if ended:
            spans = dict.fromkeys(self.sites_with_rows(), (ended[0], ended[-1]))
        for site, first_open in self.open_outage_days().items():
            old = spans.get(site)
            spans[site] = (min(first_open, old[0]), self.today) if old else (first_open, self.today)
        return self.clipped(spans)

    def clipped(self, spans: dict[str, tuple[date, date]]) -> dict[str, tuple[date, date]]:
        """Spans cut to the look-back window; those outside it dropped."""
        out = {}
        for site, (first, last) in spans.items():
            first, last = max(first, self.horizon), min(last, self.today)
            if first <= last:
                out[site] = (first, last)
        return out


def run_once(
    settings: Settings,
    store: InfluxStore,
    registry: Registry,
    now_ms: int | None = None,
    full: bool = False,
) -> PassResult:
    """One analysis pass: everything on the first run or with ``full``, else what changed.

    With the registry on PostgreSQL the pass takes its work by claiming sites
    (:func:`run_claimed`), so that any number of workers share it.
    """
    if registry.shares_work:
        return run_claimed(settings, store, registry, now_ms=now_ms, full=full)
    began = time.monotonic()
    pass_started_ms = int(time.time() * 1000)
    now_ms = pass_started_ms if now_ms is None else now_ms
    analyser = Analyser(settings, store, registry, now_ms)
    last_pass = registry.get_state(LAST_PASS_KEY)
    full = full or last_pass is None
    plan = analyser.full_plan() if full else analyser.incremental_plan(int(last_pass or 0))
    sites = {s.id: s for s in registry.sites()}
    todo = {site_id: list(ranges) for site_id, ranges in sorted(plan.items()) if site_id in sites}
    n_sites, n_days, n_points = len(todo), 0, 0
    done: dict[str, set[date]] = {site_id: set() for site_id in todo}
    analyser.buffer_writes()
    try:
        while todo:
            # Each round takes every site's next window (after its previous one, which may have
            # grown over it), and computes them chunk by chunk, reading each chunk's raw data together.
            work = []
            for site_id, ranges in list(todo.items()):
                while ranges:
                    first, last = ranges.pop(0)
                    if not set(days_between(first, last)) <= done[site_id]:
                        work.append((sites[site_id], first, last))
                        break  # else an earlier window of this site grew over this one
                if not ranges:
                    del todo[site_id]
            for chunk, raw in analyser.chunks(work):
                for site, first, last in chunk:
                    computed = analyser.compute(site, first, last, raw)
                    if computed is None:
                        continue
                    days, result, pq = computed
                    n_points += analyser.write(site, days, result, pq)
                    n_days += len(days)
                    done[site.id].update(days)
                analyser.flush()
        analyser.drain()
    finally:
        analyser.close()
    registry.clear_dirty(before_ms=pass_started_ms)
    registry.set_state(LAST_PASS_KEY, str(now_ms))
    outcome = PassResult(n_sites, n_days, n_points, time.monotonic() - began, full)
    log.info(
        "analysis pass (%s): %d sites, %d site-days, %d points written in %.1fs",
        "full" if full else "incremental",
        outcome.sites,
        outcome.days,
        outcome.points,
        outcome.seconds,
    )
    return outcome


def this_worker() -> str:
    """This process's worker id in the claims (one per process, also after a fork)."""
    return _worker_ids.setdefault(os.getpid(), worker_id())


def run_claimed(
    settings: Settings,
    store: InfluxStore,
    registry: Registry,
    now_ms: int | None = None,
    full: bool = False,
    worker: str | None = None,
) -> PassResult:
    """One pass of one of several workers sharing the registry on PostgreSQL (core.claims).

    The fleet-wide part of the plan (the first or a ``--full`` pass; days ended since the
    previous plan; open outages) is queued as spans by whichever worker holds the planning
    lock; then every worker claims queued sites in batches until none queued before this pass
    is left, and computes each claimed site alone: its dirty days and span, grown as in a
    single worker's pass. The site's planned windows and stored outages are read when it is
    claimed, not at the pass start, since another worker may have written it in between.
    """
    began = time.monotonic()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    worker = worker or this_worker()
    queue = WorkQueue(registry, worker, settings.worker_claim_lease_s)
    analyser = Analyser(settings, store, registry, now_ms)
    analyser._stored = {}  # read per site when claimed (Analyser.refresh), never for the whole fleet
    planned_full = False
    with queue.planning(wait=full) as planning:
        if planning:
            last_pass = registry.get_state(LAST_PASS_KEY)
            planned_full = full or last_pass is None
            if planned_full:
                spans = {site: ranges[0] for site, ranges in analyser.full_plan().items()}
            else:
                spans = analyser.catch_up_spans(int(last_pass or 0))
            queue.adopt_unqueued_marks()
            queue.queue_spans(spans)
            registry.set_state(LAST_PASS_KEY, str(now_ms))
    queued_before = queue.now_ms()
    sites = {s.id: s for s in registry.sites()}
    with_rows: set[str] | None = None
    n_sites = n_days = n_points = 0
    held: dict[str, Claim] = {}
    keeper = LeaseKeeper(queue).start()  # renews what is held while it is computed, however long
    try:
        while True:
            held = {c.site_id: c for c in queue.claim(CLAIM_BATCH, queued_before)}
            if not held:
                break
            keeper.hold(list(held))
            # Every claimed site's marks are read before its data: a mark made after that read
            # stays queued (finish removes only these), so late data is never taken as computed.
            jobs: dict[str, tuple[list[Mark], list[date]]] = {}
            for site_id in held:
                marks = queue.marks(site_id)
                days = {m.day for m in marks if analyser.horizon <= m.day <= analyser.today}
                span = held[site_id].span
                if span is not None:
                    first, last = analyser.clipped({site_id: span}).get(site_id, (None, None))
                    if first is not None and last is not None:
                        days.update(days_between(first, last))
                if site_id not in sites:  # registered after this pass began (its data was marked since)
                    sites = {s.id: s for s in registry.sites()}
                if site_id in sites and days:
                    if with_rows is None:
                        with_rows = analyser.sites_with_rows()
                    if site_id not in with_rows:  # new to the worker: every day from its first data on
                        days.update(days_between(min(days), analyser.today))
                jobs[site_id] = (marks, sorted(days))
            todo = [sites[k] for k, (_, days) in jobs.items() if k in sites and days]
            analyser.refresh([site.id for site in todo])
            # The batch's raw data in one read (its first windows; a grown or later one reads alone).
            work = [(site, *runs(jobs[site.id][1])[0]) for site in todo]
            for chunk, raw in analyser.chunks(work):
                for site, _, _ in chunk:
                    computed_days, points = _compute_site(analyser, site, jobs[site.id][1], worker, raw)
                    n_points += points
                    n_days += computed_days
                    n_sites += 1
                    _finish(queue, held.pop(site.id), jobs[site.id][0], settings.worker_claim_lease_s)
                    keeper.drop(site.id)
            for site_id in [k for k in held if k in jobs]:  # nothing to compute: finished as they are
                _finish(queue, held.pop(site_id), jobs[site_id][0], settings.worker_claim_lease_s)
                keeper.drop(site_id)
    finally:
        keeper.stop()
        if held:  # stopped or failed: what this worker will not compute goes back at once
            queue.release(list(held))
    outcome = PassResult(n_sites, n_days, n_points, time.monotonic() - began, planned_full)
    log.info(
        "analysis pass (%s, worker %s): %d sites, %d site-days, %d points written in %.1fs",
        "full" if planned_full else "incremental",
        worker,
        outcome.sites,
        outcome.days,
        outcome.points,
        outcome.seconds,
    )
    return outcome


def _finish(queue: WorkQueue, claim: Claim, marks: Sequence[Mark], lease_s: float) -> None:
    if not queue.finish(claim, marks):
        log.warning(
            "site %s: the claim ran out (PQMON_WORKER_CLAIM_LEASE_S=%g) and another worker took it;"
            " it computes the site again",
            claim.site_id,
            lease_s,
        )


def _compute_site(
    analyser: Analyser, site: Site, days: list[date], worker: str, raw: ChunkData | None = None
) -> tuple[int, int]:
    """Compute a claimed site's days, window by window; (site-days computed, points written).

    Each window's compute interval is logged at debug level (site, days, worker, start and
    end in epoch ms): the multi-worker test reads them to show that no two workers ever
    computed the same site-day at the same time.
    """
    done: set[date] = set()
    n_days = n_points = 0
    for first, last in runs(days):
        if set(days_between(first, last)) <= done:
            continue  # an earlier window of this site grew over this one
        start_ms = int(time.time() * 1000)
        computed = analyser.compute(site, first, last, raw)
        if computed is None:
            continue
        window, result, pq = computed
        n_points += analyser.write(site, window, result, pq)
        n_days += len(window)
        done.update(window)
        log.debug(
            "computed site=%s days=%s..%s worker=%s start_ms=%d end_ms=%d",
            site.id,
            window[0],
            window[-1],
            worker,
            start_ms,
            int(time.time() * 1000),
        )
    return n_days, n_points


def run_forever(settings: Settings, stop: threading.Event) -> None:
    store = InfluxStore.from_settings(settings)
    registry = Registry(settings.registry_url)
    archiver = Archiver(settings)  # monthly reports, in their own thread and processes
    try:
        while not stop.is_set():
            try:
                with archiver.pass_running():  # reports wait: the pass keeps InfluxDB to itself
                    run_once(settings, store, registry)
            except Exception:  # one bad pass must not end the worker; the next one retries
                log.exception("analysis pass failed; retrying in %ss", settings.worker_interval_s)
            if not archiver.started:
                # After the first pass, not beside it: a month issued from roll-ups the pass
                # was still writing would get a second version minutes later.
                archiver.start(stop)
            stop.wait(settings.worker_interval_s)
    finally:
        store.close()
        registry.close()

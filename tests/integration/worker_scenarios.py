"""Scenarios for tests/integration/test_worker_properties.py: key accounts' readings and
power-off/power-on records, delivered late and out of order in batches, with analysis passes
between the batches, on a real InfluxDB.

The points are made by the collector's own contract code (``collector.contract.decode``) and
the dirty days marked as the collector marks them (``collector.service.local_days`` of the
UTC quarter hours touched), so the worker sees exactly what it sees in production. Beside
InfluxDB a plain model of the stored points (InfluxDB semantics: one point per series and
time, the later write wins) feeds the pure roll-up, for the comparison with
``analysis.rollup.rollup_site`` over all the data at once.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from analysis.rollup import RollupPolicy, rollup_site
from analysis.worker import NOT_STORED, run_once, site_spec
from collector.contract import decode
from collector.service import BUCKET_MS, local_days, meter_infos
from core.calendar import MINUTE_MS, day_start_ms, days_between, local_day
from core.registry import Registry
from core.settings import Settings, load_settings
from core.store import InfluxStore

TZ = "Asia/Shanghai"
TODAY = date(2026, 3, 10)
NOW_MS = day_start_ms(TODAY, TZ) + 12 * 3_600_000  # 2026-03-10 12:00 +08:00: every pass's clock ends here
NOMINAL_V = 220.0
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
CHUNK_MS = 6 * HOUR_MS  # a gateway uploads its readings in 6-hour batches
# How late an item arrives after it could first have been sent; None: at the very end.
LATENESS_MS: tuple[int | None, ...] = (MINUTE_MS, 2 * HOUR_MS, 20 * HOUR_MS, 3 * DAY_MS, None)
DERIVED = ("vq_daily", "rel_daily", "pq_daily", "outage")
TAGS = {"vq_daily": ("site", "phase"), "rel_daily": ("site",), "pq_daily": ("site",), "outage": ("site",)}
REL_TOL = 1e-9
ABS_TOL = 1e-6
MAX_SHOWN = 25

_databases = itertools.count(1)


# -- the scenario ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    """Something the readings show: ``over`` (phase a +9 %), ``under`` (every phase -12 %),
    ``gap`` (no readings), ``zero`` (1-minute readings, every phase ~0 V: an interruption seen
    only in the readings) or ``dip`` (a dip event record)."""

    kind: str
    start_min: int  # minutes after the scenario's first day began
    minutes: int


@dataclass(frozen=True)
class EventOutage:
    """A supply interruption the meter records with power_off / power_on."""

    start_s: int  # seconds after the scenario's first day began
    duration_s: int
    lose_off: bool = False  # the power_off record never arrives
    lose_on: bool = False  # the power_on record never arrives
    replay_off: bool = False  # the power_off record arrives twice (same event_id)
    twin_off: bool = False  # another power_off record at the same instant, another event_id
    second_off_pm: int | None = None  # a second power_off while open, this many per mille in
    zero_readings: bool = False  # the meter reads ~0 V through it (1-minute readings); else silence
    off_late: int | None = None  # how late its power_off record arrives (LATENESS_MS); None: as other events
    on_late: int | None = None  # how late its power_on record arrives


@dataclass(frozen=True)
class Account:
    site: str
    phases: int  # 3: 0.38 kV, phase voltages ua ub uc, nominal 220 V; 1: 0.22 kV, ua
    interval_s: int  # 300 or 900 outside the 1-minute stretches
    first_day: int = 0  # its data begins this many days after the scenario's first day
    episodes: tuple[Episode, ...] = ()
    outages: tuple[EventOutage, ...] = ()

    @property
    def meter(self) -> str:
        return f"{self.site}-M1"


@dataclass(frozen=True)
class Scenario:
    n_days: int  # local days of data, ending the day before TODAY
    accounts: tuple[Account, ...]
    late_readings: int = 0  # how late reading batches arrive: an index into LATENESS_MS
    late_events: int = 0  # how late event records arrive
    late: tuple[tuple[int, int], ...] = ()  # (item, lateness): this item (see items()) arrives so late
    replays: tuple[tuple[int, int], ...] = ()  # (item, lateness): this item is delivered once more
    pass_min: tuple[int, ...] = ()  # passes before the last, in minutes after the first day began
    clock: bool = False  # True: each pass runs at its own time; False: every pass at NOW_MS

    @property
    def first_day(self) -> date:
        return TODAY - timedelta(days=self.n_days)

    @property
    def t0(self) -> int:
        return day_start_ms(self.first_day, TZ)


@dataclass(frozen=True)
class Item:
    """One MQTT message as a meter or gateway sends it."""

    site: str
    meter: str
    kind: str  # "reading" (a gateway batch) or "event"
    payload: Any
    ready_ms: int  # when it could first be sent: its last reading's window has ended, or the event time
    label: str
    late: int | None = None  # its own lateness (LATENESS_MS index); None: the scenario's default

    @property
    def topic(self) -> str:
        return f"pq/v1/{self.site}/{self.meter}/{self.kind}"


def fmt(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(TZ)).strftime("%m-%d %H:%M:%S")


def _nominal_values(acc: Account, ts: int, factor_a: float = 1.0, factor: float = 1.0) -> dict[str, float]:
    wiggle = 1 + 0.02 * math.sin(ts / 3_700_000)
    values = {"ua": round(NOMINAL_V * wiggle * factor_a * factor, 2)}
    if acc.phases == 3:
        values["ub"] = round(NOMINAL_V * wiggle * 1.005 * factor, 2)
        values["uc"] = round(NOMINAL_V * wiggle * 0.995 * factor, 2)
    return values


def _zero_values(acc: Account) -> dict[str, float]:
    return {"ua": 0.0, "ub": 1.5, "uc": 0.0} if acc.phases == 3 else {"ua": 0.0}


def account_readings(sc: Scenario, acc: Account) -> dict[int, dict[str, Any]]:
    """ts -> reading object, as the meter publishes it."""
    t0 = sc.t0
    begin = t0 + acc.first_day * DAY_MS
    end = day_start_ms(TODAY, TZ)
    step = acc.interval_s * 1000
    out: dict[int, dict[str, Any]] = {}
    for ts in range(begin, end, step):
        out[ts] = {"ts": ts, **_nominal_values(acc, ts), "f": 50.0, "interval_s": acc.interval_s}

    def span(ep: Episode) -> tuple[int, int]:
        return t0 + ep.start_min * MINUTE_MS, t0 + (ep.start_min + ep.minutes) * MINUTE_MS

    for ep in acc.episodes:
        lo, hi = span(ep)
        for ts, r in out.items():
            if lo <= ts < hi and ep.kind == "over":
                r.update(_nominal_values(acc, ts, factor_a=1.09), f=50.3)
            elif lo <= ts < hi and ep.kind == "under":
                r.update(_nominal_values(acc, ts, factor=0.88))

    def patch(lo: int, hi: int, zero_lo: int, zero_hi: int) -> None:
        """Whole slots around [zero_lo, zero_hi) become 1-minute readings, ~0 V inside it."""
        lo = max(begin, begin + (lo - begin) // step * step)
        hi = min(end, begin + -(-(hi - begin) // step) * step)
        for ts in [t for t in out if lo <= t < hi]:
            del out[ts]
        for ts in range(lo, hi, MINUTE_MS):
            zero = zero_lo <= ts < zero_hi
            values = _zero_values(acc) if zero else _nominal_values(acc, ts)
            out[ts] = {"ts": ts, **values, "f": 50.0, "interval_s": 60}

    for o in acc.outages:
        lo = t0 + o.start_s * 1000
        hi = min(lo + o.duration_s * 1000, NOW_MS)
        if o.zero_readings and hi - lo <= 6 * HOUR_MS:
            patch(
                lo - 10 * MINUTE_MS,
                hi + 10 * MINUTE_MS,
                lo // MINUTE_MS * MINUTE_MS,
                -(-hi // MINUTE_MS) * MINUTE_MS,
            )
        else:  # no supply, no readings
            for ts in [t for t, r in out.items() if t < hi and t + r["interval_s"] * 1000 > lo]:
                del out[ts]
    for ep in acc.episodes:
        lo, hi = span(ep)
        if ep.kind == "zero":
            patch(lo - 5 * MINUTE_MS, hi + 5 * MINUTE_MS, lo, hi)
    for ep in acc.episodes:
        lo, hi = span(ep)
        if ep.kind == "gap":
            for ts in [t for t, r in out.items() if t < hi and t + r["interval_s"] * 1000 > lo]:
                del out[ts]
    return dict(sorted(out.items()))


def account_events(sc: Scenario, acc: Account) -> list[tuple[dict[str, Any], str, int | None]]:
    """(event object, label, its own lateness or None) in the order they were recorded."""
    t0 = sc.t0
    events: list[tuple[dict[str, Any], str, int | None]] = []
    for j, o in enumerate(acc.outages):
        start = t0 + o.start_s * 1000
        end = start + o.duration_s * 1000
        p = f"{acc.site}-o{j}"
        if not o.lose_off:
            off = {"event_id": f"{p}-off", "ts": start, "type": "power_off"}
            events.append((off, f"power_off {fmt(start)}", o.off_late))
            if o.replay_off:
                events.append((dict(off), f"power_off {fmt(start)} (replayed)", None))
        if o.twin_off:
            events.append(
                (
                    {"event_id": f"{p}-twin", "ts": start, "type": "power_off"},
                    f"power_off {fmt(start)} (twin id)",
                    None,
                )
            )
        if o.second_off_pm is not None:
            ts = start + o.duration_s * o.second_off_pm  # per mille of the duration, in ms
            if ts < NOW_MS - MINUTE_MS:
                events.append(
                    (
                        {"event_id": f"{p}-off2", "ts": ts, "type": "power_off"},
                        f"power_off {fmt(ts)} (second)",
                        None,
                    )
                )
        if not o.lose_on and end < NOW_MS - MINUTE_MS:
            on = {"event_id": f"{p}-on", "ts": end, "type": "power_on"}
            events.append((on, f"power_on {fmt(end)}", o.on_late))
    for k, ep in enumerate(e for e in acc.episodes if e.kind == "dip"):
        ts = t0 + ep.start_min * MINUTE_MS + 1234
        dip = {
            "event_id": f"{acc.site}-dip{k}",
            "ts": ts,
            "type": "dip",
            "phase": "a",
            "duration_ms": 180.0,
            "residual_pct": 60.0,
        }
        events.append((dip, f"dip {fmt(ts)}", None))
    return events


def items(sc: Scenario) -> list[Item]:
    """Every message of the scenario, in a fixed order: per account its reading batches, then its events."""
    out: list[Item] = []
    for acc in sc.accounts:
        chunks: dict[int, list[dict[str, Any]]] = {}
        for ts, r in account_readings(sc, acc).items():
            chunks.setdefault((ts - sc.t0) // CHUNK_MS, []).append(r)
        for k, rows in sorted(chunks.items()):
            last = rows[-1]
            ready = last["ts"] + last["interval_s"] * 1000
            label = f"readings {fmt(sc.t0 + k * CHUNK_MS)}+6h ({len(rows)})"
            out.append(Item(acc.site, acc.meter, "reading", rows, ready, label))
        for event, label, late in account_events(sc, acc):
            out.append(Item(acc.site, acc.meter, "event", event, int(event["ts"]), label, late))
    return out


@dataclass
class Batch:
    now_ms: int  # the worker's clock at the pass after this batch
    at_ms: int  # when the pass runs (the batch holds what arrived by then)
    items: list[Item] = field(default_factory=list)


def batches(sc: Scenario) -> list[Batch]:
    """What arrives before each pass: an item arrives at ready + its lateness (at most NOW_MS)."""
    all_items = items(sc)
    lateness = [
        i.late if i.late is not None else sc.late_readings if i.kind == "reading" else sc.late_events
        for i in all_items
    ]
    for i, late in sc.late:
        if all_items:
            lateness[i % len(all_items)] = late
    picks = list(enumerate(lateness)) + [(i % len(all_items), late) for i, late in sc.replays if all_items]
    arrivals: list[tuple[int, int, Item]] = []
    for n, (i, late) in enumerate(picks):
        item = all_items[i]
        delay = LATENESS_MS[late]
        at = NOW_MS if delay is None else min(item.ready_ms + delay, NOW_MS)
        arrivals.append((at, n, item))
    arrivals.sort(key=lambda a: (a[0], a[1]))
    pass_times = sorted({sc.t0 + m * MINUTE_MS for m in sc.pass_min if sc.t0 + m * MINUTE_MS < NOW_MS})
    out = [Batch(t if sc.clock else NOW_MS, t) for t in [*pass_times, NOW_MS]]
    k = 0
    for at, _, item in arrivals:
        while out[k].at_ms < at:
            k += 1
        out[k].items.append(item)
    return out


def _late_text(late: int) -> str:
    delay = LATENESS_MS[late]
    return "at the end" if delay is None else f"+{delay // MINUTE_MS}min"


def describe(sc: Scenario) -> str:
    lines = [f"days {sc.first_day} .. {TODAY - timedelta(days=1)}; now {fmt(NOW_MS)}; clock={sc.clock}"]
    for acc in sc.accounts:
        lines.append(
            f"  {acc.site}: {acc.phases}-phase, {acc.interval_s}s readings from day {acc.first_day};"
            f" episodes {[(e.kind, fmt(sc.t0 + e.start_min * MINUTE_MS), e.minutes) for e in acc.episodes]}"
        )
        for o in acc.outages:
            flags = [
                k for k in ("lose_off", "lose_on", "replay_off", "twin_off", "zero_readings") if getattr(o, k)
            ]
            if o.second_off_pm is not None:
                flags.append(f"second_off@{o.second_off_pm}permille")
            for k in ("off_late", "on_late"):
                if getattr(o, k) is not None:
                    flags.append(f"{k}={_late_text(getattr(o, k))}")
            lines.append(f"    outage {fmt(sc.t0 + o.start_s * 1000)} for {o.duration_s}s {' '.join(flags)}")
    for n, b in enumerate(batches(sc)):
        kind = "full" if n == 0 else "incremental"
        shown = [f"{i.site} {i.label}" for i in b.items if i.kind == "event"]
        for site in sorted({i.site for i in b.items if i.kind == "reading"}):
            chunks = [i for i in b.items if i.kind == "reading" and i.site == site]
            starts = sorted(int(i.payload[0]["ts"]) for i in chunks)
            shown.append(f"{site} {len(chunks)} reading batches ({fmt(starts[0])} .. {fmt(starts[-1])})")
        lines.append(
            f"  pass {n + 1} ({kind}) at {fmt(b.at_ms)}, now={fmt(b.now_ms)}, after: {'; '.join(shown) or '-'}"
        )
    lines.append(f"  pass {len(batches(sc)) + 1} (incremental) at now={fmt(NOW_MS)}, nothing new")
    return "\n".join(lines)


# -- the system under test, on a real InfluxDB ---------------------------------------------
def registry_row(acc: Account) -> dict[str, str]:
    return {
        "site_id": acc.site,
        "site_kind": "account",
        "name": f"Account {acc.site}",
        "voltage_class_kv": "0.38" if acc.phases == 3 else "0.22",
        "phases": str(acc.phases),
        "meter_id": acc.meter,
        "nominal_v": str(NOMINAL_V),
        "upper_pct": "",
        "lower_pct": "",
        "profile": "gb",
        "feeder_id": "",
        "manager": "",
    }


class Harness:
    """A fresh database and registry; delivers items as the collector would and runs passes."""

    def __init__(
        self, influx_url: str, workdir: Path, accounts: Sequence[Account], registry_url: str | None = None
    ) -> None:
        """``registry_url``: an empty registry database (default: a SQLite file in ``workdir``)."""
        db = f"wprop{os.getpid()}_{next(_databases)}"
        env = {
            "PQMON_INFLUX_URL": influx_url,
            "PQMON_INFLUX_DB": db,
            "PQMON_REGISTRY_URL": registry_url or f"sqlite:///{workdir / 'registry.db'}",
            "PQMON_DATA_DIR": str(workdir / "var"),
            "PQMON_TZ": TZ,
            "PQMON_LOOKBACK_DAYS": "30",
        }
        self.settings: Settings = load_settings(env)
        self.store = InfluxStore(influx_url, db)
        self.store.ensure_database()
        self.registry = Registry(self.settings.registry_url)
        self.registry.upsert_rows((n + 2, registry_row(a)) for n, a in enumerate(accounts))
        self.meters = meter_infos(self.registry)
        # The stored raw points as InfluxDB keeps them: per series and time, the later write wins.
        self.readings: dict[str, dict[int, dict[str, Any]]] = {}
        self.events: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}

    def deliver(self, batch: Iterable[Item], collector_now_ms: int) -> None:
        """Decode, write and mark dirty exactly as one collector write pass does."""
        lines: list[str] = []
        touched: set[tuple[str, int]] = set()
        oldest = collector_now_ms - self.settings.retention_days * DAY_MS
        for item in batch:
            decoded = decode(
                item.topic, json.dumps(item.payload).encode(), self.meters, collector_now_ms, oldest
            )
            assert not decoded.rejected, decoded.rejected
            lines.extend(decoded.lines)
            touched.update((decoded.site, ts // BUCKET_MS) for ts in decoded.times)
            if item.kind == "reading":
                for r in item.payload:
                    self.readings.setdefault(item.site, {}).setdefault(r["ts"], {}).update(r)
            else:
                key = (item.payload["type"], int(item.payload["ts"]))
                self.events.setdefault(item.site, {}).setdefault(key, {}).update(item.payload)
        self.store.write(lines)
        self.registry.mark_dirty(local_days(touched, self.settings.tz))

    def run(self, now_ms: int, full: bool = False) -> None:
        run_once(self.settings, self.store, self.registry, now_ms=now_ms, full=full)

    def drop_derived(self) -> None:
        """Forget every derived row, so that a full pass is a recomputation from scratch."""
        for name in DERIVED:
            self.store.query_raw(f'DROP MEASUREMENT "{name}"')

    def snapshot(self) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Every derived row: key (measurement, tags..., time, n) -> its other tags and fields."""
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for name in DERIVED:
            tags = TAGS[name]
            for df in self.store.query(f'SELECT * FROM "{name}"'):
                records = [
                    {k: _plain(v) for k, v in rec.items() if not _missing(v)} for rec in df.to_dict("records")
                ]
                for rec in sorted(records, key=repr):
                    if name == "outage" and rec.get("valid") is False:
                        continue  # withdrawn: what the reports read skips it too
                    base = (name, *(rec.get(t) for t in tags), int(rec["time"]))
                    n = next(i for i in itertools.count() if (*base, i) not in rows)
                    rows[(*base, n)] = {k: v for k, v in rec.items() if k not in ("time", *tags)}
        return rows

    def pure(self, now_ms: int) -> dict[tuple[Any, ...], dict[str, Any]]:
        """rollup_site over all the stored data at once, per site, from its first day to today:
        vq_daily rows, rel_daily rows and the outages (start, end, cause, open)."""
        s = self.settings
        policy = RollupPolicy(s.tz, s.short_outage_s, s.outage_as_under)
        today = local_day(now_ms, s.tz)
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for site in self.registry.sites():
            found = site_spec(site)
            readings = self.readings.get(site.id, {})
            events = self.events.get(site.id, {})
            if found is None or not (readings or events):
                continue
            spec, _meter = found
            rframe = pd.DataFrame(
                [
                    {"time": ts, **{k: v for k, v in r.items() if k != "ts"}}
                    for ts, r in sorted(readings.items())
                ]
            )
            if rframe.empty:
                rframe = pd.DataFrame({"time": pd.Series([], dtype="int64")})
            eframe = pd.DataFrame(
                [
                    {"time": ts, **{k: v for k, v in e.items() if k != "ts"}}
                    for (_t, ts), e in sorted(events.items(), key=lambda kv: kv[0][1])
                ]
            )
            if eframe.empty:
                eframe = pd.DataFrame({"time": pd.Series([], dtype="int64"), "type": [], "event_id": []})
            first_ms = min([*readings, *(ts for _t, ts in events)])
            days = days_between(local_day(first_ms, s.tz), today)
            result = rollup_site(spec, rframe, eframe, days, policy, now_ms, [])
            for rec in result.vq.to_dict("records"):
                key = ("vq_daily", site.id, rec["phase"], int(rec["day_ms"]), 0)
                rows[key] = {k: _plain(v) for k, v in rec.items() if k not in NOT_STORED and not _missing(v)}
            for rec in result.rel.to_dict("records"):
                rows[("rel_daily", site.id, int(rec["day_ms"]), 0)] = {
                    k: _plain(v) for k, v in rec.items() if k != "day_ms"
                }
            starts: dict[int, int] = {}
            for o in result.outages:
                n = starts[o.start_ms] = starts.get(o.start_ms, -1) + 1
                rows[("outage", site.id, o.start_ms, n)] = {
                    "start_ms": o.start_ms,
                    "end_ms": o.end_or(now_ms),
                    "cause": o.cause,
                    "open": o.is_open,
                }
        return rows

    def close(self) -> None:
        try:
            self.store.query_raw(f'DROP DATABASE "{self.store.db}"')
        finally:
            self.store.close()
            self.registry.close()


def play(h: Harness, sc: Scenario, log: list[str] | None = None) -> None:
    """Deliver each batch, then run a pass (the first is full: the registry has no previous
    pass); at the end one more incremental pass at NOW_MS with nothing new."""
    for n, b in enumerate(batches(sc)):
        h.deliver(b.items, b.at_ms)
        h.run(b.now_ms)
        if log is not None:
            log.append(f"pass {n + 1} at now={fmt(b.now_ms)} after {len(b.items)} items")
    h.run(NOW_MS)


# -- comparison -----------------------------------------------------------------------------
def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return bool(a == b)


def describe_key(key: tuple[Any, ...]) -> str:
    name, *tags, ts, n = key
    when = fmt(ts) if name == "outage" else str(local_day(ts, TZ))
    dup = f" (#{n + 1} at this time)" if n else ""
    return f"{name} {' '.join(str(t) for t in tags)} {when}{dup}"


def differences(
    left: dict[tuple[Any, ...], dict[str, Any]],
    right: dict[tuple[Any, ...], dict[str, Any]],
    names: tuple[str, str],
    only_fields_of_right: bool = False,
) -> list[str]:
    """Human-readable differences, row by row and field by field."""
    out: list[str] = []
    for key in sorted(set(left) | set(right), key=lambda k: tuple(map(str, k))):
        a, b = left.get(key), right.get(key)
        if a is None or b is None:
            present = names[0] if b is None else names[1]
            row = a if b is None else b
            out.append(f"{describe_key(key)}: only in {present}: {row}")
            continue
        fields = set(b) if only_fields_of_right else set(a) | set(b)
        for f in sorted(fields):
            if not same_value(a.get(f), b.get(f)):
                out.append(f"{describe_key(key)}: {f}: {names[0]}={a.get(f)!r} {names[1]}={b.get(f)!r}")
    return out


def report(title: str, diffs: list[str]) -> str:
    shown = diffs[:MAX_SHOWN]
    more = f"\n  ... and {len(diffs) - MAX_SHOWN} more" if len(diffs) > MAX_SHOWN else ""
    return f"{title} ({len(diffs)} differences):\n  " + "\n  ".join(shown) + more


def _pq_zeros_as_absent(rows: dict[tuple[Any, ...], dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """pq_daily writes its reading counts only when the computed window had readings at all
    (f_n=0 beside the window's other days, nothing in a window without readings): a count of
    0 and no count mean the same, so both are left out of the comparison."""
    out = {}
    for key, row in rows.items():
        if key[0] == "pq_daily":
            row = {k: v for k, v in row.items() if not (isinstance(v, (int, float)) and v == 0)}
            if not row:
                continue
        out[key] = row
    return out


def check(h: Harness, sc: Scenario) -> None:
    """Snapshot after the incremental passes, recompute everything from scratch, compare both;
    then compare the recomputation with the pure roll-up of all the data at once."""
    after_passes = h.snapshot()
    h.drop_derived()
    h.run(NOW_MS, full=True)
    full = h.snapshot()
    # By design (worker.incremental_plan) the day still running, today, gets no pass of its
    # own: its rows are written when new data marks it dirty, and with a moving clock only
    # their elapsed time differs. So today's rows count only when the clock stood still and
    # the incremental passes wrote them. Finished days and outages must agree exactly.
    today_ms = day_start_ms(TODAY, TZ)

    def compared(key: tuple[Any, ...]) -> bool:
        return key[0] == "outage" or key[-2] < today_ms or (not sc.clock and key in after_passes)

    incremental = {k: v for k, v in after_passes.items() if compared(k)}
    full_cmp = {k: v for k, v in full.items() if compared(k)}
    incremental, full_cmp = _pq_zeros_as_absent(incremental), _pq_zeros_as_absent(full_cmp)
    failures = []
    diffs = differences(incremental, full_cmp, ("incremental", "full"))
    if diffs:
        failures.append(report("incremental passes != full recomputation", diffs))
    pure = h.pure(NOW_MS)
    stored = {k: v for k, v in full.items() if k[0] in ("vq_daily", "rel_daily", "outage")}
    diffs = differences(stored, pure, ("full", "rollup_site"), only_fields_of_right=True)
    if diffs:
        failures.append(report("full recomputation != rollup_site over all data", diffs))
    assert not failures, "\n".join(failures)

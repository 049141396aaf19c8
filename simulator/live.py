"""The live part of a demonstration: incidents ``speed`` times as often as in the history,
on the wall clock.

Why not a faster clock: the collector refuses readings more than 10 minutes ahead of its
own clock, and every "now" downstream (today's figures, the alert rules' last hour, a meter
silent for three intervals) is the wall clock's. So time is not compressed; incidents are.
At ``speed`` S each meter has outages, voltage excursions and communication losses S times
as often as the history model (:mod:`simulator.fleet`) gives it (S - 1 times on top of the
model's own), each lasting a few wall-clock minutes: long enough for the alert rules to fire
on it (5 minutes out of limits, 3 intervals without a reading) and short enough to see them
clear while watching. Outages are announced as they happen (a meter's "last gasp"
``power_off``, then ``power_on`` when supply is back), so an outage alert is open for as long
as the outage lasts. A feeder's outage is an outage of every account it supplies.

Planned windows given to the scenario (``pqmon up`` registers one with customer notices) are
carried out: every meter behind the site loses supply for the window, events and all.

Draws come from generators seeded with ``(seed, meter, minute)``, so a scenario started at
the same minute gives the same incidents; it is not part of the history model, so a later
backfill of the same period does not repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulator.fleet import (
    DAY_S,
    FEEDER_OUTAGE_RATE,
    OWN_OUTAGE_RATE,
    SHORT_SHARE,
    SILENCE_P_ACCOUNT,
    SILENCE_P_FEEDER,
    Fleet,
    MeterSpec,
    _rng,
)

MINUTE_MS = 60_000
EVENT_DELAY_MS = 2_000  # a last gasp or a power_on reaches the broker a moment after the fact
# Wall-clock durations (seconds): long enough for the rules to fire, short enough to watch clear.
SHORT_OUTAGE_S = (60, 170)  # below the 180 s short-interruption threshold
SUSTAINED_OUTAGE_S = (240, 600)
EXCURSION_S = (420, 720)  # the voltage rule fires after 5 minutes out, clears after 10 in
SILENCE_S = (300, 720)  # the silence rule fires after 3 reporting intervals
OPENING_DELAY_MS = 20_000  # the opening incidents start this long after the live part
OPENING_OUTAGE_MS = 70_000


@dataclass(frozen=True)
class Incident:
    """Something that happens to one meter during the live part."""

    meter_id: str
    kind: str  # "outage", "silence", "over" or "under"
    start_ms: int
    end_ms: int
    planned: bool = False
    level_pct: float = 0.0  # excursions: the deviation from nominal while it lasts
    key: str = ""  # what the event ids are made of (shared by a feeder's accounts)

    def events(self) -> list[tuple[int, dict[str, Any]]]:
        """(publish time, event payload) of an outage; nothing for the other kinds."""
        if self.kind != "outage":
            return []
        off = {"event_id": f"{self.meter_id}-{self.key}-off", "ts": self.start_ms, "type": "power_off"}
        on = {
            "event_id": f"{self.meter_id}-{self.key}-on",
            "ts": self.end_ms,
            "type": "power_on",
            "duration_ms": self.end_ms - self.start_ms,
        }
        return [(self.start_ms + EVENT_DELAY_MS, off), (self.end_ms + EVENT_DELAY_MS, on)]


@dataclass(frozen=True)
class PlannedCut:
    """An announced window the scenario carries out: ``site_id`` is a feeder or an account."""

    site_id: str
    start_ms: int
    end_ms: int


def parse_planned(text: str) -> PlannedCut:
    """``SITE,START,END`` with ISO times that carry their offset (``...+08:00`` or ``...Z``)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"--planned takes SITE,START,END, got {text!r}")
    try:
        start, end = (datetime.fromisoformat(p) for p in parts[1:])
    except ValueError:
        raise ValueError(
            f"--planned {text!r}: START and END must be ISO times, e.g. 2026-12-01T14:00+08:00"
        ) from None
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError(f"--planned {text!r}: give the times with their offset (+08:00, or Z for UTC)")
    if end <= start:
        raise ValueError(f"--planned {text!r}: the window must end after it starts")
    return PlannedCut(parts[0], int(start.timestamp() * 1000), int(end.timestamp() * 1000))


def planned_text(cut: PlannedCut) -> str:
    """The ``--planned`` argument for ``cut`` (the inverse of :func:`parse_planned`)."""

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat()

    return f"{cut.site_id},{iso(cut.start_ms)},{iso(cut.end_ms)}"


class LiveScenario:
    """The incidents of the live part, drawn minute by minute from ``start_ms`` on."""

    def __init__(
        self, fleet: Fleet, speed: float, start_ms: int, planned: tuple[PlannedCut, ...] = ()
    ) -> None:
        self.fleet = fleet
        self.extra = max(0.0, speed - 1.0)  # the history model supplies the first 1x
        self.start_minute = -(-start_ms // MINUTE_MS)  # the first whole minute after the start
        self._drawn_until = self.start_minute  # minutes before this are drawn
        self._own: dict[str, list[Incident]] = {m.meter_id: [] for m in fleet.meters}
        self._by_meter: dict[str, list[Incident]] = {m.meter_id: [] for m in fleet.meters}
        self._accounts_of: dict[str, list[MeterSpec]] = {}
        for m in fleet.accounts:
            if m.feeder_id:
                self._accounts_of.setdefault(m.feeder_id, []).append(m)
        for cut in planned:
            self._add_planned(cut)
        if self.extra > 0:
            self._opening(start_ms)

    # -- drawing ---------------------------------------------------------------------------
    def _rates_per_min(self, m: MeterSpec) -> tuple[float, float, float]:
        """(outage, excursion, silence) probabilities per minute for one meter."""
        if m.kind == "feeder":
            outage, silence = FEEDER_OUTAGE_RATE, SILENCE_P_FEEDER
        else:
            outage, silence = OWN_OUTAGE_RATE, SILENCE_P_ACCOUNT
        per_min = self.extra / (DAY_S / 60)
        return outage * per_min, m.excursion_rate * per_min, silence * per_min

    def _affected(self, m: MeterSpec) -> list[MeterSpec]:
        return [m, *self._accounts_of.get(m.site_id, [])] if m.kind == "feeder" else [m]

    def _busy(self, meter_id: str, start_ms: int, end_ms: int, excursion: bool = False) -> bool:
        """An incident of the same sort overlaps: outages and silences exclude each other, an
        excursion another excursion (an outage may cut an excursion short)."""
        return any(
            i.start_ms < end_ms and start_ms < i.end_ms and (i.kind in ("over", "under")) == excursion
            for i in self._by_meter[meter_id]
        )

    def _add(self, incident: Incident) -> None:
        self._by_meter[incident.meter_id].append(incident)

    def _add_planned(self, cut: PlannedCut) -> None:
        site = next((m for m in self.fleet.meters if m.site_id == cut.site_id), None)
        if site is None:
            raise ValueError(f"planned window for {cut.site_id!r}: no such site in the simulated fleet")
        key = f"P{cut.start_ms // MINUTE_MS}"
        for m in self._affected(site):
            self._add(Incident(m.meter_id, "outage", cut.start_ms, cut.end_ms, True, key=key))

    def _opening(self, start_ms: int) -> None:
        """One of each right away, so a demonstration shows them in its first minutes whatever
        the draws: a short outage of the first account on a feeder (alert fired at once, resolved
        70 s later), an under-voltage of the next account (its alert fires after 5 minutes and
        clears 10 minutes after it ends) and a silence of the one after (alert after 3 intervals)."""
        fed = [m for m in self.fleet.accounts if m.feeder_id] or self.fleet.accounts
        others = [m for m in self.fleet.accounts if m is not fed[0]]
        t0 = start_ms + OPENING_DELAY_MS
        self._add(Incident(fed[0].meter_id, "outage", t0, t0 + OPENING_OUTAGE_MS, key=f"O{t0 // 1000}"))
        if others:
            m = others[0]
            level = -(m.vclass.lower_pct + 2.0)
            self._add(Incident(m.meter_id, "under", t0, t0 + EXCURSION_S[0] * 1000, level_pct=level))
        if len(others) > 1:
            self._add(Incident(others[1].meter_id, "silence", t0, t0 + SILENCE_S[0] * 1000))

    def draw_until(self, until_ms: int) -> None:
        """Draw every minute that starts before ``until_ms`` (and not yet drawn)."""
        last = until_ms // MINUTE_MS
        if self.extra <= 0:
            self._drawn_until = max(self._drawn_until, last)
            return
        for minute in range(self._drawn_until, last):
            t0 = minute * MINUTE_MS
            for m in self.fleet.meters:
                self._draw(m, minute, t0)
        self._drawn_until = max(self._drawn_until, last)

    def _draw(self, m: MeterSpec, minute: int, t0: int) -> None:
        p_out, p_exc, p_sil = self._rates_per_min(m)
        rng = _rng(self.fleet.seed, m.meter_id, minute, "live")
        u = rng.random(4)
        key = f"L{minute}"
        if u[0] < p_out:
            lo, hi = SHORT_OUTAGE_S if u[1] < SHORT_SHARE else SUSTAINED_OUTAGE_S
            end = t0 + int(lo + (hi - lo) * u[2]) * 1000
            affected = self._affected(m)
            if not any(self._busy(a.meter_id, t0, end) for a in affected):
                for a in affected:
                    self._add(Incident(a.meter_id, "outage", t0, end, key=key))
        elif u[0] < p_out + p_exc and m.kind == "account":
            over = u[1] < 0.5
            end = t0 + int(EXCURSION_S[0] + (EXCURSION_S[1] - EXCURSION_S[0]) * u[2]) * 1000
            v = m.vclass
            level = v.upper_pct + 0.5 + 2.5 * u[3] if over else -(v.lower_pct + 0.5 + 3.0 * u[3])
            if not self._busy(m.meter_id, t0, end, excursion=True):
                kind = "over" if over else "under"
                self._add(Incident(m.meter_id, kind, t0, end, level_pct=level, key=key))
        elif u[0] < p_out + p_exc + p_sil:
            end = t0 + int(SILENCE_S[0] + (SILENCE_S[1] - SILENCE_S[0]) * u[2]) * 1000
            if not self._busy(m.meter_id, t0, end):
                self._add(Incident(m.meter_id, "silence", t0, end, key=key))

    # -- what the meters send --------------------------------------------------------------
    def incidents(self, meter_id: str, start_ms: int, end_ms: int) -> list[Incident]:
        self.draw_until(end_ms)
        return sorted(
            (i for i in self._by_meter[meter_id] if i.start_ms < end_ms and i.end_ms > start_ms),
            key=lambda i: i.start_ms,
        )

    def apply(self, m: MeterSpec, readings: list[dict[str, Any]], interval_s: int) -> list[dict[str, Any]]:
        """The readings as the meter sends them: none while it is cut off or silent, the
        excursion's level while one lasts (every phase)."""
        if not readings:
            return readings
        step = interval_s * 1000
        found = self.incidents(m.meter_id, readings[0]["ts"], readings[-1]["ts"] + step)
        if not found:
            return readings
        out = []
        for r in readings:
            w0, w1 = r["ts"], r["ts"] + step
            hit = [i for i in found if i.start_ms < w1 and i.end_ms > w0]
            if any(i.kind in ("outage", "silence") for i in hit):
                continue
            if hit:
                i = hit[0]
                share = (min(i.end_ms, w1) - max(i.start_ms, w0)) / step
                r = dict(r)
                for name in m.phase_fields:
                    target = m.nominal_v * (1 + i.level_pct / 100.0)
                    r[name] = round(r[name] * (1 - share) + target * share, m.vclass.decimals)
            out.append(r)
        return out

    def events_due(self, after_ms: int, until_ms: int) -> list[tuple[MeterSpec, dict[str, Any]]]:
        """Outage events published in ``(after_ms, until_ms]``, in publishing order."""
        self.draw_until(until_ms)
        due = []
        for m in self.fleet.meters:
            for i in self._by_meter[m.meter_id]:
                for at, ev in i.events():
                    if after_ms < at <= until_ms:
                        due.append((at, m, ev))
        due.sort(key=lambda x: (x[0], x[1].meter_id, x[2]["event_id"]))
        return [(m, ev) for _, m, ev in due]

    def all_incidents(self) -> list[Incident]:
        return sorted((i for v in self._by_meter.values() for i in v), key=lambda i: (i.start_ms, i.meter_id))


def expected_per_hour(fleet: Fleet, speed: float) -> dict[str, float]:
    """How many incidents of each kind the live part gives per wall-clock hour (for the docs)."""
    extra = max(0.0, speed - 1.0) / 24
    outages = sum(FEEDER_OUTAGE_RATE if m.kind == "feeder" else OWN_OUTAGE_RATE for m in fleet.meters)
    silences = sum(SILENCE_P_FEEDER if m.kind == "feeder" else SILENCE_P_ACCOUNT for m in fleet.meters)
    excursions = sum(m.excursion_rate for m in fleet.accounts)
    return {
        "outage": outages * extra,
        "excursion": excursions * extra,
        "silence": silences * extra,
    }

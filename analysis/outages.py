"""Outage reconstruction from meter events and readings (README: Definitions).

Meters upload power-off records after power returns, so events arrive late, out of order,
twice, or never. The rules, each chosen so that the figure a manager signs does not depend
on the order in which records happened to arrive:

- Events are paired by their own time, never by arrival. Replays (same ``event_id``) and
  identical time-and-type records collapse.
- Every ``power_off`` starts an outage. It ends at the first of: its ``power_on`` (the
  first one after it, before the next ``power_off``); the evidence of supply in the
  readings (the first reading that begins after it and shows supply on every phase); just
  before the next ``power_off`` (a second power-off means supply came back in between).
  Each end says how it was known: ``event``, ``readings`` or ``inferred``.
- A ``power_on`` wins over the readings unless a reading showing supply ended before it:
  a 15-minute reading that shows supply on average may well contain the power-on.
- An outage with nothing after it that shows supply is open.
- A ``power_on`` with no ``power_off`` before it (the record was lost) starts nothing; an
  interruption the readings show (every phase below 10 % of nominal) counts on its own.
- Silence is not an outage: it is missing data.

Because every outage is decided by the records and readings from its own start to its
own end, recomputing any window that holds it whole gives the same outage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from core.calendar import MINUTE_MS

# Every phase below this share of nominal counts as an interruption (IEC 61000-4-30, 10 %).
INTERRUPTION_FRACTION = 0.10
DLT836_SHORT_S = 180.0
IEEE1366_SHORT_S = 300.0

# How an outage's start or end was known.
BY_EVENT = "event"
BY_READINGS = "readings"
BY_INFERENCE = "inferred"  # just before a later power_off, with no record or reading of the return
END_RANK = {BY_EVENT: 2, BY_READINGS: 1, BY_INFERENCE: 0}


@dataclass(frozen=True)
class Outage:
    start_ms: int
    end_ms: int | None  # None: still open (nothing shows supply after it)
    source: str  # "event" when any event record took part, else "reading"
    cause: str = "unplanned"
    start_source: str = BY_EVENT  # "event" or "readings"
    end_source: str | None = BY_EVENT  # "event", "readings", "inferred"; None while open

    def __post_init__(self) -> None:
        if self.end_ms is None and self.end_source is not None:
            object.__setattr__(self, "end_source", None)  # an open outage has no end to know

    @property
    def is_open(self) -> bool:
        return self.end_ms is None

    def end_or(self, now_ms: int) -> int:
        return now_ms if self.end_ms is None else self.end_ms

    def duration_s(self, now_ms: int) -> float:
        return max(0, self.end_or(now_ms) - self.start_ms) / 1000.0

    def is_short(self, short_s: float, now_ms: int) -> bool:
        """Short interruption: duration <= threshold (3 min exactly is short, DL/T 836-2016)."""
        return self.duration_s(now_ms) <= short_s


@dataclass(frozen=True)
class SupplyEvidence:
    """Readings that show supply on every phase: their start times and ends, sorted by start."""

    start_ms: np.ndarray
    end_ms: np.ndarray

    @classmethod
    def none(cls) -> SupplyEvidence:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_readings(
        cls, times_ms: np.ndarray, interval_s: np.ndarray, per_unit: Sequence[np.ndarray]
    ) -> SupplyEvidence:
        """``per_unit``: each phase's values over its nominal; supply needs every phase present
        and at or above the interruption threshold."""
        if not len(times_ms) or not per_unit:
            return cls.none()
        stacked = np.vstack(per_unit)
        with np.errstate(invalid="ignore"):
            on = np.all(np.isfinite(stacked) & (stacked >= INTERRUPTION_FRACTION), axis=0)
        starts = times_ms[on].astype(np.int64)
        ends = starts + np.rint(interval_s[on] * 1000.0).astype(np.int64)
        order = np.argsort(starts, kind="stable")
        return cls(starts[order], ends[order])


def _dedupe(events: pd.DataFrame) -> pd.DataFrame:
    ev = events[events["type"].isin(["power_off", "power_on"])]
    if "event_id" in ev:
        # The earliest record of an id wins, whatever order the rows came in.
        ev = ev.sort_values(["time", "event_id"], kind="stable")
        ev = ev[ev["event_id"].isna() | ~ev["event_id"].duplicated()]
    return ev.drop_duplicates(subset=["time", "type"])


def from_events(events: pd.DataFrame, evidence: SupplyEvidence | None = None) -> list[Outage]:
    """Outages started by ``power_off`` records (columns: time, type, event_id), ended by the
    rules of this module; ``evidence`` are the readings that show supply."""
    if events.empty:
        return []
    evidence = evidence or SupplyEvidence.none()
    ev = _dedupe(events)
    times = ev["time"].to_numpy(np.int64)
    kinds = ev["type"].to_numpy()
    offs = np.sort(times[kinds == "power_off"])
    ons = np.sort(times[kinds == "power_on"])
    if not offs.size:
        return []
    # For each power_off: the next power_off, the first power_on strictly after it (one at
    # the same instant closed the previous outage), and the first reading begun after it
    # that shows supply.
    next_off = np.append(offs[1:], np.iinfo(np.int64).max)
    on_i = np.searchsorted(ons, offs, side="right")
    ev_i = np.searchsorted(evidence.start_ms, offs, side="right")
    outages: list[Outage] = []
    for k, start in enumerate(offs.tolist()):
        limit = int(next_off[k])
        seen = ev_i[k] < evidence.start_ms.size
        seen_at = int(evidence.start_ms[ev_i[k]]) if seen else None
        seen_until = int(evidence.end_ms[ev_i[k]]) if seen else None
        on = int(ons[on_i[k]]) if on_i[k] < ons.size else None
        if on is not None and on <= limit and not (seen_until is not None and seen_until <= on):
            end, how = on, BY_EVENT
        elif seen_at is not None and seen_at < limit:
            end, how = seen_at, BY_READINGS
        elif k + 1 < offs.size:
            end, how = limit, BY_INFERENCE
        else:
            outages.append(Outage(start, None, "event", start_source=BY_EVENT, end_source=None))
            continue
        outages.append(Outage(start, end, "event", start_source=BY_EVENT, end_source=how))
    return outages


def from_low_minutes(low: np.ndarray, start_ms: int) -> list[Outage]:
    """Runs of minutes in which every phase read below 10 % of nominal."""
    if not low.any():
        return []
    padded = np.concatenate(([False], low, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [
        Outage(
            start_ms + int(s) * MINUTE_MS,
            start_ms + int(e) * MINUTE_MS,
            "reading",
            start_source=BY_READINGS,
            end_source=BY_READINGS,
        )
        for s, e in zip(starts, ends, strict=True)
    ]


def _later_end(a: Outage, b: Outage) -> tuple[int | None, str | None]:
    if a.end_ms is None or b.end_ms is None:
        return None, None
    if a.end_ms != b.end_ms:
        return (a.end_ms, a.end_source) if a.end_ms > b.end_ms else (b.end_ms, b.end_source)
    best = max((a.end_source, b.end_source), key=lambda s: END_RANK.get(s or "", -1))
    return a.end_ms, best


def merge(outages: Iterable[Outage]) -> list[Outage]:
    """Union of overlapping or touching outages; an event-sourced record wins the label.

    An outage whose end was inferred from the next power_off touches that next outage by
    construction; the two stay apart, since the second power_off says supply came back.
    """
    ordered = sorted(outages, key=lambda o: (o.start_ms, o.start_source != BY_EVENT))
    merged: list[Outage] = []
    for o in ordered:
        if merged:
            last = merged[-1]
            separate = last.end_source == BY_INFERENCE and o.start_ms == last.end_ms
            if not separate and (last.end_ms is None or o.start_ms <= last.end_ms):
                end, how = _later_end(last, o)
                source = "event" if "event" in (last.source, o.source) else last.source
                merged[-1] = replace(last, end_ms=end, end_source=how, source=source)
                continue
        merged.append(o)
    return merged


def classify(outages: Sequence[Outage], planned_windows_ms: Sequence[tuple[int, int]]) -> list[Outage]:
    """``planned`` when the outage begins inside a registered planned-outage window."""
    return [
        replace(
            o,
            cause="planned" if any(ws <= o.start_ms <= we for ws, we in planned_windows_ms) else "unplanned",
        )
        for o in outages
    ]


def overlap_s(o: Outage, begin_ms: int, end_ms: int, now_ms: int) -> float:
    """Seconds of outage ``o`` inside [begin_ms, end_ms)."""
    lo = max(o.start_ms, begin_ms)
    hi = min(o.end_or(now_ms), end_ms)
    return max(0, hi - lo) / 1000.0

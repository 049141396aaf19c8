"""Outage reconstruction from meter events and readings (DESIGN §5).

Meters upload power-off records after power returns, so events arrive late, out of order
and sometimes twice. Pairing works on the event time, never the arrival order; duplicate
records (same ``event_id``, or a second power_off while one is open) collapse; a power_off
with no power_on is an open outage. Silence is not an outage: it is missing data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis.calendar import MINUTE_MS

# Every phase below this share of nominal counts as an interruption (IEC 61000-4-30, 10 %).
INTERRUPTION_FRACTION = 0.10
DLT836_SHORT_S = 180.0
IEEE1366_SHORT_S = 300.0


@dataclass(frozen=True)
class Outage:
    start_ms: int
    end_ms: int | None  # None: still open (power_off without power_on)
    source: str  # "event" or "reading"
    cause: str = "unplanned"

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


def from_events(events: pd.DataFrame) -> list[Outage]:
    """Pair ``power_off``/``power_on`` records (columns: time, type, event_id)."""
    if events.empty:
        return []
    ev = events[events["type"].isin(["power_off", "power_on"])]
    ev = ev.drop_duplicates(subset=["event_id"]).drop_duplicates(subset=["time", "type"])
    # At one instant a power_on closes before a power_off opens the next outage.
    order = ev["type"].map({"power_on": 0, "power_off": 1})
    ev = ev.assign(_o=order).sort_values(["time", "_o"], kind="stable")
    outages: list[Outage] = []
    open_start: int | None = None
    for ts, kind in zip(ev["time"].to_numpy(), ev["type"].to_numpy(), strict=True):
        if kind == "power_off":
            if open_start is None:
                open_start = int(ts)
        elif open_start is not None:
            outages.append(Outage(open_start, int(ts), "event"))
            open_start = None
    if open_start is not None:
        outages.append(Outage(open_start, None, "event"))
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
        Outage(start_ms + int(s) * MINUTE_MS, start_ms + int(e) * MINUTE_MS, "reading")
        for s, e in zip(starts, ends, strict=True)
    ]


def merge(outages: Iterable[Outage]) -> list[Outage]:
    """Union of overlapping or touching outages; an event-sourced record wins the label."""
    ordered = sorted(outages, key=lambda o: o.start_ms)
    merged: list[Outage] = []
    for o in ordered:
        if merged:
            last = merged[-1]
            if last.end_ms is None or o.start_ms <= last.end_ms:
                end = None if (last.end_ms is None or o.end_ms is None) else max(last.end_ms, o.end_ms)
                source = "event" if "event" in (last.source, o.source) else last.source
                merged[-1] = replace(last, end_ms=end, source=source)
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

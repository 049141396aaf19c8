"""Daily roll-ups of one site: ``vq_daily`` and ``rel_daily`` rows (docs/influxdb.md).

Pure: readings and events in, rows out. The worker does the reading and writing, and
reports sum these rows, so a month is never a rescan of raw data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from analysis import outages as outage_rules
from analysis.qualification import (
    COMPARE_DECIMALS,
    classify_minutes,
    count_by_day,
    minute_means,
    outage_minute_mask,
    vqr_pct,
)
from core.calendar import MINUTE_MS, day_start_ms
from core.limits import Limits

PHASE_FIELDS = ("ua", "ub", "uc")
LINE_FIELDS = ("uab", "ubc", "uca")
VOLTAGE_FIELDS = PHASE_FIELDS + LINE_FIELDS
PHASE_NAMES = {"ua": "a", "ub": "b", "uc": "c", "uab": "ab", "ubc": "bc", "uca": "ca"}
DEFAULT_INTERVAL_S = 60.0
EN_BLOCK_MIN = 10
EN_MIN_MINUTES = 8
EN_BAND_PCT = 10.0


@dataclass(frozen=True)
class SiteSpec:
    site_id: str
    phases: int
    nominal_v: float  # phase-to-neutral, in the meter's units
    limits: Limits


@dataclass(frozen=True)
class RollupPolicy:
    tz: str
    short_s: float = outage_rules.DLT836_SHORT_S
    outage_as_under: bool = False


@dataclass
class SiteRollup:
    """The rows of one site's window, as plain dicts: the worker turns them into points
    directly (a DataFrame per site cost more than the roll-up itself); ``vq`` and ``rel``
    give them as DataFrames for readers that want one."""

    # day_ms, phase, monitored_min, over_min, under_min, outage_min, missing_min, vqr_pct ...;
    # the account's "all" rows also calendar_min and channels (floats, as they always were stored)
    vq_rows: list[dict[str, Any]]
    rel_rows: list[dict[str, Any]]  # day_ms, outage_s, short_s, outages_* ...
    outages: list[outage_rules.Outage] = field(default_factory=list)  # begun inside the window
    found: list[outage_rules.Outage] = field(default_factory=list)  # every outage seen

    @cached_property
    def vq(self) -> pd.DataFrame:
        return pd.DataFrame(self.vq_rows)

    @cached_property
    def rel(self) -> pd.DataFrame:
        return pd.DataFrame(self.rel_rows)


def channels_for(spec: SiteSpec, readings: pd.DataFrame) -> tuple[str, ...]:
    """Which voltages are qualified: phase voltages, or line voltages for three-wire meters."""
    if spec.phases == 1:
        return ("ua",)
    has_phase = any(_has_values(readings, c) for c in PHASE_FIELDS)
    has_line = any(_has_values(readings, c) for c in LINE_FIELDS)
    return LINE_FIELDS if has_line and not has_phase else PHASE_FIELDS


def _has_values(readings: pd.DataFrame, column: str) -> bool:
    return column in readings and not np.isnan(readings[column].to_numpy(np.float64)).all()


def rollup_site(
    spec: SiteSpec,
    readings: pd.DataFrame,
    events: pd.DataFrame,
    days: list[date],
    policy: RollupPolicy,
    now_ms: int,
    planned_windows_ms: list[tuple[int, int]] | None = None,
) -> SiteRollup:
    """Roll up the consecutive local ``days`` of one site.

    ``readings`` has columns time (UTC ms), voltage fields and interval_s; ``events`` has
    time, type and event_id and should reach back before the first day, so that an
    outage already open then is known.
    """
    start_ms = day_start_ms(days[0], policy.tz)
    end_ms = day_start_ms(days[-1] + timedelta(days=1), policy.tz)
    n = (end_ms - start_ms) // MINUTE_MS
    day_edges = np.array([(day_start_ms(d, policy.tz) - start_ms) // MINUTE_MS for d in days], dtype=np.int64)
    minute_start = start_ms + np.arange(n, dtype=np.int64) * MINUTE_MS
    elapsed = minute_start < now_ms  # minutes still to come are neither monitored nor missing

    times = readings["time"].to_numpy(np.int64) if len(readings) else np.zeros(0, np.int64)
    if np.unique(times).size != times.size:  # a replayed row must weigh once
        readings = readings.drop_duplicates()
        times = readings["time"].to_numpy(np.int64)
    channels = channels_for(spec, readings)
    if "interval_s" in readings:
        interval = readings["interval_s"].to_numpy(np.float64)
        interval = np.where(np.isnan(interval), DEFAULT_INTERVAL_S, interval)
    else:
        interval = np.full(len(readings), DEFAULT_INTERVAL_S)
    # The minute grid reaches over every reading given, so that an interruption seen in
    # readings across the window's edge is found whole (and counted on the day it began).
    grid_start = min(start_ms, int(times.min()) // MINUTE_MS * MINUTE_MS) if times.size else start_ms
    grid_end = max(end_ms, int((times + interval * 1000).max())) if times.size else end_ms
    grid_n = -(-(grid_end - grid_start) // MINUTE_MS)
    offset = (start_ms - grid_start) // MINUTE_MS
    means: dict[str, np.ndarray] = {}
    nominal: dict[str, float] = {}
    grid_means = []
    per_unit = []
    for ch in channels:
        values = readings[ch].to_numpy(np.float64) if ch in readings else np.full(len(times), np.nan)
        nominal[ch] = spec.nominal_v * (math.sqrt(3) if ch in LINE_FIELDS else 1.0)
        on_grid = minute_means(times, values, interval, grid_start, grid_n)
        grid_means.append(on_grid / nominal[ch])
        per_unit.append(values / nominal[ch])
        means[ch] = on_grid[offset : offset + n]
    evidence = outage_rules.SupplyEvidence.from_readings(times, interval, per_unit)

    # Every phase below 10 % of nominal: an interruption seen in the readings.
    stacked = np.vstack(grid_means)
    grid_data = np.asarray(~np.isnan(stacked).all(axis=0))
    with np.errstate(invalid="ignore"):
        low = grid_data & np.all(np.isnan(stacked) | (stacked < outage_rules.INTERRUPTION_FRACTION), axis=0)
    any_data = grid_data[offset : offset + n]

    found = outage_rules.merge(
        outage_rules.from_events(events, evidence) + outage_rules.from_low_minutes(low, grid_start)
    )
    found = outage_rules.classify(found, planned_windows_ms or [])
    out_mask = outage_minute_mask([(o.start_ms, o.end_or(now_ms)) for o in found], start_ms, n)
    out_mask &= elapsed

    flagged_10min = en50160_flags(events, out_mask, start_ms, n)
    vq_rows: list[dict[str, object]] = []
    sums = ("monitored", "over", "under", "dev_sum_pct", "en_n", "en_within", "en_flagged")
    pooled: dict[str, np.ndarray] = {k: np.zeros(len(days)) for k in sums}
    for ch in channels:
        lower, upper = spec.limits.band(nominal[ch])
        monitored, over, under, outage, missing = classify_minutes(
            means[ch], out_mask, lower, upper, outage_as_under=policy.outage_as_under
        )
        in_service = monitored & elapsed & ~out_mask
        deviation = np.where(in_service, (means[ch] - nominal[ch]) / nominal[ch] * 100.0, 0.0)
        en_n, en_within, en_flagged = en50160_counts(means[ch], nominal[ch], flagged_10min, day_edges)
        extremes = day_extremes(means[ch], in_service, day_edges, start_ms)
        counts = {
            "monitored": count_by_day(monitored & elapsed, day_edges),
            "over": count_by_day(over & elapsed, day_edges),
            "under": count_by_day(under & elapsed, day_edges),
            "outage": count_by_day(outage, day_edges),
            "missing": count_by_day(missing & elapsed, day_edges),
            "dev_sum_pct": np.add.reduceat(deviation, day_edges) if n else np.zeros(len(days)),
            "en_n": en_n,
            "en_within": en_within,
            "en_flagged": en_flagged,
        }
        for k in pooled:
            pooled[k] = pooled[k] + counts[k]
        for i, d in enumerate(days):
            vq_rows.append(_vq_row(d, policy.tz, PHASE_NAMES[ch], counts, i) | extremes[i])

    account_outage = count_by_day(out_mask, day_edges)
    account_missing = count_by_day(~any_data & ~out_mask & elapsed, day_edges)
    calendar = count_by_day(elapsed, day_edges)
    for i, d in enumerate(days):
        row = _vq_row(
            d,
            policy.tz,
            "all",
            {**pooled, "outage": account_outage, "missing": account_missing},
            i,
        )
        # Floats: these two exist on the "all" rows only, so as a DataFrame column (NaN on the
        # phase rows) they were always written as floats; InfluxDB keeps a field's first type.
        row["calendar_min"] = float(calendar[i])
        row["channels"] = float(len(channels))
        vq_rows.append(row)

    rel_rows = [_rel_row(d, policy, found, now_ms) for d in days if day_start_ms(d, policy.tz) < now_ms]
    in_window = [o for o in found if start_ms <= o.start_ms < end_ms]
    return SiteRollup(vq_rows, rel_rows, in_window, found)


def _vq_row(d: date, tz: str, phase: str, counts: dict[str, np.ndarray], i: int) -> dict[str, object]:
    monitored, over, under = (int(counts[k][i]) for k in ("monitored", "over", "under"))
    return {
        "day_ms": day_start_ms(d, tz),
        "phase": phase,
        "monitored_min": monitored,
        "over_min": over,
        "under_min": under,
        "outage_min": int(counts["outage"][i]),
        "missing_min": int(counts["missing"][i]),
        "vqr_pct": vqr_pct(over, under, monitored),
        # Sum of per-minute deviations in % of nominal: mean deviation = dev_sum_pct / monitored_min.
        "dev_sum_pct": float(counts["dev_sum_pct"][i]),
        # EN 50160: valid 10-minute values, those within +/-10 %, and flagged ones left out.
        "en_n": int(counts["en_n"][i]),
        "en_within": int(counts["en_within"][i]),
        "en_flagged": int(counts["en_flagged"][i]),
    }


def day_extremes(
    means: np.ndarray, in_service: np.ndarray, day_edges: np.ndarray, start_ms: int
) -> list[dict[str, object]]:
    """Per day: the highest and lowest in-service minute mean with the minute each began, their
    sum and count (mean = v_sum / v_n): a voltage monitor's daily statistics (DL/T 500).

    A day without any in-service minute has ``v_n`` 0 and zeros for the rest, meaningless:
    readers go by ``v_n``. Every field is always written, since a recomputed InfluxDB point
    keeps any field it is not given; and every one is a float (times included), so InfluxDB
    sees one field type whatever the day held.
    """
    bounds = list(day_edges) + [means.size]
    out: list[dict[str, object]] = []
    for first, last in zip(bounds[:-1], bounds[1:], strict=True):
        ok = in_service[first:last] & ~np.isnan(means[first:last])
        if not ok.any():
            out.append(dict.fromkeys(("v_max", "v_max_ms", "v_min", "v_min_ms", "v_sum", "v_n"), 0.0))
            continue
        values = np.where(ok, means[first:last], np.nan)
        hi, lo = int(np.nanargmax(values)), int(np.nanargmin(values))
        out.append(
            {
                "v_max": float(values[hi]),
                "v_max_ms": float(start_ms + (int(first) + hi) * MINUTE_MS),
                "v_min": float(values[lo]),
                "v_min_ms": float(start_ms + (int(first) + lo) * MINUTE_MS),
                "v_sum": float(np.nansum(values)),
                "v_n": float(ok.sum()),
            }
        )
    return out


def en50160_flags(events: pd.DataFrame, out_mask: np.ndarray, start_ms: int, n: int) -> np.ndarray:
    """10-minute intervals flagged by a dip, swell or interruption (IEC 61000-4-30 §4.7)."""
    blocks = -(-n // EN_BLOCK_MIN)
    flagged = np.zeros(blocks, dtype=bool)
    if out_mask.any():
        padded = np.zeros(blocks * EN_BLOCK_MIN, dtype=bool)
        padded[:n] = out_mask
        flagged |= padded.reshape(blocks, EN_BLOCK_MIN).any(axis=1)
    if len(events) and "type" in events:
        pq = events[events["type"].isin(["dip", "swell", "interruption"])]
        duration = pq["duration_ms"] if "duration_ms" in pq else pd.Series(0.0, index=pq.index)
        for ts, dur in zip(pq["time"].to_numpy(np.int64), duration.fillna(0).to_numpy(), strict=True):
            first = (int(ts) - start_ms) // (EN_BLOCK_MIN * MINUTE_MS)
            last = (int(ts) + int(dur) - start_ms) // (EN_BLOCK_MIN * MINUTE_MS)
            if last < 0 or first >= blocks:
                continue  # wholly before or after the window (a negative end would wrap around)
            flagged[max(first, 0) : min(last, blocks - 1) + 1] = True
    return flagged


def en50160_counts(
    minute_means_v: np.ndarray, nominal: float, flagged: np.ndarray, day_edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per day: valid unflagged 10-minute values, those within +/-10 % of nominal, flagged ones.

    A 10-minute value is the RMS of its minute means and needs at least 8 of its 10 minutes;
    the statistic is judged per week from these counts (EN-1 to EN-4).
    """
    n = minute_means_v.size
    blocks = -(-n // EN_BLOCK_MIN)
    padded = np.full(blocks * EN_BLOCK_MIN, np.nan)
    padded[:n] = minute_means_v
    grid = padded.reshape(blocks, EN_BLOCK_MIN)
    present = (~np.isnan(grid)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.nansum(grid**2, axis=1) / present)
    valid = present >= EN_MIN_MINUTES
    deviation = np.round(np.abs(rms - nominal) / nominal * 100.0, COMPARE_DECIMALS)
    within = valid & ~flagged & (deviation <= EN_BAND_PCT)
    block_edges = day_edges // EN_BLOCK_MIN
    return (
        count_by_day(valid & ~flagged, block_edges),
        count_by_day(within, block_edges),
        count_by_day(valid & flagged, block_edges),
    )


def _rel_row(
    d: date, policy: RollupPolicy, found: list[outage_rules.Outage], now_ms: int
) -> dict[str, object]:
    begin = day_start_ms(d, policy.tz)
    end = day_start_ms(d + timedelta(days=1), policy.tz)
    row: dict[str, object] = {
        "day_ms": begin,
        "period_s": (min(end, now_ms) - begin) / 1000.0,
        "outage_s": 0.0,
        "short_s": 0.0,
        "planned_s": 0.0,
        "unplanned_s": 0.0,
        "outages_sustained": 0,
        "outages_short": 0,
        "outages_planned": 0,
        "outages_unplanned": 0,
        "outages_open": 0,
    }
    for o in found:
        seconds = outage_rules.overlap_s(o, begin, end, now_ms)
        short = o.is_short(policy.short_s, now_ms)
        row["outage_s"] += seconds  # type: ignore[operator]
        if short:
            row["short_s"] += seconds  # type: ignore[operator]
        row[f"{o.cause}_s"] += seconds  # type: ignore[operator]
        if begin <= o.start_ms < end:  # counted once, on the day it began
            row["outages_short" if short else "outages_sustained"] += 1  # type: ignore[operator]
            row[f"outages_{o.cause}"] += 1  # type: ignore[operator]
            row["outages_open"] += int(o.is_open)  # type: ignore[operator]
    return row

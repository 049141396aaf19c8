"""Voltage qualification on one-minute statistics (GB/T 12325-2008, README: Definitions).

VQR % = (1 - (over + under) / monitored) x 100, where every count is in one-minute units.
A minute is out of limits only when its mean is strictly above the upper or strictly below
the lower limit. Outage and missing minutes are not monitored time unless the
``outage_as_under`` policy (docs/definitions.md D1b) counts outage minutes as under-limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.calendar import MINUTE_MS

# Minute means and limits are rounded to this many decimals before comparing, so that
# float noise (220 * 0.9 = 198.00000000000003) never turns a value at a limit into an excursion.
COMPARE_DECIMALS = 6


@dataclass(frozen=True)
class MinuteCounts:
    """Per-channel minute counts, each an array with one entry per day (or a scalar total)."""

    monitored: np.ndarray
    over: np.ndarray
    under: np.ndarray
    outage: np.ndarray
    missing: np.ndarray


def vqr_pct(over: float, under: float, monitored: float) -> float | None:
    """The qualification rate in %, or None when nothing was monitored."""
    if monitored <= 0:
        return None
    return (1.0 - (over + under) / monitored) * 100.0


def minute_means(
    ts_ms: np.ndarray,
    values: np.ndarray,
    interval_s: np.ndarray,
    start_ms: int,
    n_minutes: int,
) -> np.ndarray:
    """Time-weighted one-minute means on the grid [start_ms + k minutes), NaN where no data.

    A reading's timestamp is the start of its averaging window. Readings shorter than a
    minute (1 s, 3 s ...) are averaged into their minute; a reading of ``interval_s`` >= 60
    stands for each of the whole minutes it covers (a 900 s value stands for 15 minutes).
    """
    ok = np.isfinite(values)
    ts_ms, values, interval_s = ts_ms[ok], values[ok], interval_s[ok]
    first = (ts_ms - start_ms) // MINUTE_MS
    span = np.maximum(1, np.rint(interval_s / 60.0)).astype(np.int64)
    weight_each = np.minimum(interval_s, 60.0)
    idx = np.repeat(first, span) + _ranges(span)
    vals = np.repeat(values, span)
    weights = np.repeat(weight_each, span)
    keep = (idx >= 0) & (idx < n_minutes)
    idx, vals, weights = idx[keep], vals[keep], weights[keep]
    wsum = np.bincount(idx, weights=weights, minlength=n_minutes)
    vsum = np.bincount(idx, weights=weights * vals, minlength=n_minutes)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = vsum / wsum
    means[wsum == 0] = np.nan
    return means


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """[0..l0-1, 0..l1-1, ...] without a Python loop."""
    if lengths.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = np.repeat(ends - lengths, lengths)
    return np.arange(ends[-1], dtype=np.int64) - starts


def classify_minutes(
    means: np.ndarray,
    outage: np.ndarray,
    lower: float,
    upper: float,
    *,
    outage_as_under: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (monitored, over, under, outage, missing) for one channel's minutes."""
    rounded = np.round(means, COMPARE_DECIMALS)
    lower, upper = round(lower, COMPARE_DECIMALS), round(upper, COMPARE_DECIMALS)
    has = ~np.isnan(rounded)
    monitored = has & ~outage
    with np.errstate(invalid="ignore"):
        over = monitored & (rounded > upper)
        under = monitored & (rounded < lower)
    missing = ~has & ~outage
    if outage_as_under:
        monitored = monitored | outage
        under = under | outage
    return monitored, over, under, outage.copy(), missing


def count_by_day(mask: np.ndarray, day_edges: np.ndarray) -> np.ndarray:
    """Sum a per-minute mask into days; ``day_edges`` are the minute index of each day start."""
    if mask.size == 0:
        return np.zeros(len(day_edges), dtype=np.int64)
    return np.add.reduceat(mask.astype(np.int64), day_edges)


def outage_minute_mask(intervals_ms: list[tuple[int, int]], start_ms: int, n_minutes: int) -> np.ndarray:
    """Minutes that overlap any outage; 12:00:00 to 12:45:00 covers 45 of them (README: Definitions)."""
    mask = np.zeros(n_minutes, dtype=bool)
    for begin, end in intervals_ms:
        first = max(0, (begin - start_ms) // MINUTE_MS)
        last = min(n_minutes, -(-(end - start_ms) // MINUTE_MS))
        if last > first:
            mask[first:last] = True
    return mask

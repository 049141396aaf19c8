"""The EN 50160 profile (docs/definitions.md, §4.2): 10-min values judged over a week.

Each check takes the values of one evaluation period (a week of 10-min values, or a year of
10-s frequency values) and reports the share within the band and the verdict. Intervals
flagged under IEC 61000-4-30 (by a dip, swell or interruption) are left out of N, as meters
do with "Ninvalid" (decision D6); ``exclude_flagged=False`` keeps them for comparison.

Share criteria are "at least": 95.00 % of values within the band passes (EN-1, EN-5). A
value exactly on a band edge is within it. Percentages are rounded to
``COMPARE_DECIMALS`` before the comparison so that float noise never flips a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd

from analysis.pq import rms_aggregate, thd_pct
from analysis.qualification import COMPARE_DECIMALS

TEN_MINUTES_MS = 600_000
EN50160_THD_LIMIT_PCT = 8.0
EN50160_THD_MAX_ORDER = 40
EN50160_HARMONIC_SHARE_PCT = 5.0  # N1/N and N2/N may each be at most 5 %
DIP_THRESHOLD_PCT = 90.0
SWELL_THRESHOLD_PCT = 110.0

# EN 50160:2010 LV harmonic limits, % of U1; no values above the 25th.
EN50160_HARMONIC_LIMITS_PCT: Mapping[int, float] = MappingProxyType(
    {
        2: 2.0, 3: 5.0, 4: 1.0, 5: 6.0, 7: 5.0, 9: 1.5, 11: 3.5, 13: 3.0, 15: 0.5,
        17: 2.0, 19: 1.5, 21: 0.5, 23: 1.5, 25: 1.5,
        **{h: 0.5 for h in range(6, 25, 2)},
    }
)  # fmt: skip

# Residual-voltage rows of the dip table (Table 5): (lowest u of the row, row letter).
_DIP_ROWS = ((80.0, "A"), (70.0, "B"), (40.0, "C"), (5.0, "D"), (-np.inf, "X"))
# Duration columns, upper edges in seconds, each inclusive: 10 ms <= t <= 200 ms is column 1.
_DIP_COLUMNS = (0.2, 0.5, 1.0, 5.0, 60.0)
_SWELL_COLUMNS = (0.5, 5.0, 60.0)
_MIN_EVENT_S = 0.01

Level = Literal["LV", "MV"]


@dataclass(frozen=True)
class ShareResult:
    """One EN 50160 share criterion over an evaluation period.

    ``n`` counts the values used (flagged ones excluded unless asked otherwise);
    ``all_within_wide`` is the 100 %-of-the-time band where the quantity has one.
    """

    n: int
    n_flagged: int
    n_within: int
    pct_within: float | None
    required_pct: float
    all_within_wide: bool

    @property
    def passed(self) -> bool:
        return bool(
            self.n > 0
            and self.pct_within is not None
            and _round(self.pct_within) >= _round(self.required_pct)
            and self.all_within_wide
        )


@dataclass(frozen=True)
class HarmonicsResult:
    """EN 50160 harmonic compliance on N valid intervals (docs/definitions.md, EN-7)."""

    n: int
    n_flagged: int
    n1: int  # intervals where any order exceeds its limit
    n2: int  # intervals where THD > 8 %
    pct_n1: float | None
    pct_n2: float | None

    @property
    def passed(self) -> bool:
        return bool(
            self.n > 0
            and self.pct_n1 is not None
            and self.pct_n2 is not None
            and _round(self.pct_n1) <= EN50160_HARMONIC_SHARE_PCT
            and _round(self.pct_n2) <= EN50160_HARMONIC_SHARE_PCT
        )


def _round(x: np.ndarray | float) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64), COMPARE_DECIMALS)


def _valid(values: np.ndarray, flags: np.ndarray | None, exclude_flagged: bool) -> tuple[np.ndarray, int]:
    v = np.asarray(values, dtype=np.float64)
    flg = np.zeros(v.shape[0], dtype=bool) if flags is None else np.asarray(flags, dtype=bool)
    keep = np.isfinite(v) if v.ndim == 1 else np.isfinite(v).all(axis=tuple(range(1, v.ndim)))
    n_flagged = int((flg & keep).sum())
    if exclude_flagged:
        keep &= ~flg
    return v[keep], n_flagged


def _share(
    values: np.ndarray,
    flags: np.ndarray | None,
    exclude_flagged: bool,
    band: tuple[float, float],
    required_pct: float,
    wide: tuple[float, float] | None,
) -> ShareResult:
    v, n_flagged = _valid(values, flags, exclude_flagged)
    r = _round(v)
    within = int(((r >= _round(band[0])) & (r <= _round(band[1]))).sum())
    all_wide = True if wide is None else bool(((r >= _round(wide[0])) & (r <= _round(wide[1]))).all())
    n = int(v.size)
    return ShareResult(
        n=n,
        n_flagged=n_flagged,
        n_within=within,
        pct_within=within / n * 100.0 if n else None,
        required_pct=required_pct,
        all_within_wide=all_wide,
    )


def ten_minute_values(
    time_ms: np.ndarray, values: np.ndarray, flags: np.ndarray | None = None
) -> pd.DataFrame:
    """RMS 10-min values synchronised to the UTC 10-min tick, flag propagated (§4.2).

    Columns: start_ms, rms, min, max, count, flagged.
    """
    labels = np.asarray(time_ms, dtype=np.int64) // TEN_MINUTES_MS
    agg = rms_aggregate(values, labels, flags)
    return pd.DataFrame(
        {
            "start_ms": agg.labels.astype(np.int64) * TEN_MINUTES_MS,
            "rms": agg.rms,
            "min": agg.min,
            "max": agg.max,
            "count": agg.count,
            "flagged": agg.flagged,
        }
    )


def voltage_variation_check(
    values_10min: np.ndarray,
    nominal_v: float,
    flags: np.ndarray | None = None,
    *,
    level: Level = "LV",
    exclude_flagged: bool = True,
) -> ShareResult:
    """Supply voltage variations (EN-1..EN-4).

    LV: ±10 % for 95 % of the week and +10 / −15 % for 100 %. MV: ±10 % for 99 % and ±15 %
    for 100 %.
    """
    band = (0.9 * nominal_v, 1.1 * nominal_v)
    if level == "LV":
        return _share(values_10min, flags, exclude_flagged, band, 95.0, (0.85 * nominal_v, 1.1 * nominal_v))
    if level == "MV":
        return _share(values_10min, flags, exclude_flagged, band, 99.0, (0.85 * nominal_v, 1.15 * nominal_v))
    raise ValueError(f"level must be 'LV' or 'MV', got {level!r}")


def frequency_check(
    values_10s: np.ndarray,
    nominal_hz: float = 50.0,
    flags: np.ndarray | None = None,
    *,
    synchronous: bool = True,
    exclude_flagged: bool = True,
) -> ShareResult:
    """Power frequency on 10-s means (EN-5).

    Synchronous systems: ±1 % for 99.5 % of a year and +4 / −6 % always; islands: ±2 % for
    95 % of a week and ±15 % always.
    """
    if synchronous:
        band, pct, wide = (0.99, 1.01), 99.5, (0.94, 1.04)
    else:
        band, pct, wide = (0.98, 1.02), 95.0, (0.85, 1.15)
    return _share(
        values_10s,
        flags,
        exclude_flagged,
        (band[0] * nominal_hz, band[1] * nominal_hz),
        pct,
        (wide[0] * nominal_hz, wide[1] * nominal_hz),
    )


def flicker_check(
    plt: np.ndarray, flags: np.ndarray | None = None, *, exclude_flagged: bool = True
) -> ShareResult:
    """Plt <= 1 for 95 % of the week (§4.1)."""
    return _share(plt, flags, exclude_flagged, (-np.inf, 1.0), 95.0, None)


def unbalance_check(
    u2_pct: np.ndarray, flags: np.ndarray | None = None, *, exclude_flagged: bool = True
) -> ShareResult:
    """Negative-sequence unbalance 0–2 % for 95 % of the week (§4.1)."""
    return _share(u2_pct, flags, exclude_flagged, (0.0, 2.0), 95.0, None)


def harmonic_limit_vector(n_orders: int) -> np.ndarray:
    """Limit per order index (% of U1), +inf where EN 50160 sets none (order 0, 1, > 25)."""
    limits = np.full(n_orders, np.inf)
    for h, pct in EN50160_HARMONIC_LIMITS_PCT.items():
        if h < n_orders:
            limits[h] = pct
    return limits


def harmonics_check(
    spectra: np.ndarray, flags: np.ndarray | None = None, *, exclude_flagged: bool = True
) -> HarmonicsResult:
    """N1 (any order over its limit) and N2 (THD to the 40th over 8 %) on N intervals (EN-7).

    ``spectra`` has one row per 10-min interval, column h = magnitude of order h. The site
    complies when N1/N <= 5 % and N2/N <= 5 %.
    """
    s = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    s, n_flagged = _valid(s, flags, exclude_flagged)
    ratio = _round(s / s[:, 1:2] * 100.0)
    over_any = (ratio > harmonic_limit_vector(s.shape[1])).any(axis=1)
    thd_over = _round(thd_pct(s, EN50160_THD_MAX_ORDER)) > EN50160_THD_LIMIT_PCT
    n = int(s.shape[0])
    n1, n2 = int(over_any.sum()), int(thd_over.sum())
    return HarmonicsResult(
        n=n,
        n_flagged=n_flagged,
        n1=n1,
        n2=n2,
        pct_n1=n1 / n * 100.0 if n else None,
        pct_n2=n2 / n * 100.0 if n else None,
    )


def _column(duration_s: np.ndarray, edges: tuple[float, ...], open_last: bool) -> np.ndarray:
    """1-based duration column, 0 outside the table (shorter than 10 ms, or past the last edge)."""
    t = _round(duration_s)
    col = np.searchsorted(np.asarray(edges), t, side="left") + 1
    col[t < _MIN_EVENT_S] = 0
    beyond = col > len(edges)
    col[beyond] = len(edges) + 1 if open_last else 0
    return col


def classify_dips(residual_pct: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    """EN 50160:2010 Table 5 cell ("A1".."X5") per dip; None when not a dip or outside the table.

    Rows: 90 > u >= 80 (A), 80 > u >= 70 (B), 70 > u >= 40 (C), 40 > u >= 5 (D), 5 > u (X).
    Columns: 10–200 ms, ≤ 500 ms, ≤ 1 s, ≤ 5 s, ≤ 60 s, each upper edge inclusive (EN-6).
    """
    u = _round(np.atleast_1d(residual_pct))
    col = _column(np.atleast_1d(duration_s), _DIP_COLUMNS, open_last=False)
    row = np.select([u >= lo for lo, _ in _DIP_ROWS], [r for _, r in _DIP_ROWS], default="")
    out = np.full(u.shape, None, dtype=object)
    ok = (u < DIP_THRESHOLD_PCT) & (col > 0)
    out[ok] = [f"{r}{c}" for r, c in zip(row[ok], col[ok], strict=True)]
    return out


def classify_swells(
    swell_pct: np.ndarray, duration_s: np.ndarray, *, include_over_60s: bool = False
) -> np.ndarray:
    """EN 50160 swell cell: u >= 120 (S), 120 > u > 110 (T); 10–500 ms, ≤ 5 s, ≤ 60 s (EN-6).

    Exactly 110 % is not a swell. ``include_over_60s`` adds the vendor column S4/T4 (t > 60 s),
    which EN 50160:2010 probably lacks.
    """
    u = _round(np.atleast_1d(swell_pct))
    col = _column(np.atleast_1d(duration_s), _SWELL_COLUMNS, open_last=include_over_60s)
    row = np.where(u >= 120.0, "S", "T")
    out = np.full(u.shape, None, dtype=object)
    ok = (u > SWELL_THRESHOLD_PCT) & (col > 0)
    out[ok] = [f"{r}{c}" for r, c in zip(row[ok], col[ok], strict=True)]
    return out


def classify_dip(residual_pct: float, duration_s: float) -> str | None:
    """One dip's cell, see ``classify_dips``."""
    cell = classify_dips(np.array([residual_pct]), np.array([duration_s]))[0]
    return None if cell is None else str(cell)


def classify_swell(swell_pct: float, duration_s: float, *, include_over_60s: bool = False) -> str | None:
    """One swell's cell, see ``classify_swells``."""
    cells = classify_swells(np.array([swell_pct]), np.array([duration_s]), include_over_60s=include_over_60s)
    return None if cells[0] is None else str(cells[0])


def dip_table(residual_pct: np.ndarray, duration_s: np.ndarray) -> pd.DataFrame:
    """Counts per Table 5 cell: rows A, B, C, D, X; columns 1–5 (the EN 50160 report table)."""
    cells = classify_dips(residual_pct, duration_s)
    return _count_table(cells, [r for _, r in _DIP_ROWS], len(_DIP_COLUMNS))


def swell_table(swell_pct: np.ndarray, duration_s: np.ndarray) -> pd.DataFrame:
    """Counts per swell cell: rows S, T; columns 1–3."""
    cells = classify_swells(swell_pct, duration_s)
    return _count_table(cells, ["S", "T"], len(_SWELL_COLUMNS))


def _count_table(cells: np.ndarray, rows: list[str], n_cols: int) -> pd.DataFrame:
    table = pd.DataFrame(0, index=rows, columns=range(1, n_cols + 1), dtype=np.int64)
    for cell, count in pd.Series(cells).dropna().value_counts().items():
        table.loc[str(cell)[0], int(str(cell)[1:])] = int(count)
    return table

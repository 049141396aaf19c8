"""Power-quality indices beside the voltage rate: frequency, unbalance, harmonics, flicker.

- Frequency deviation, GB/T 15945-2008: ±0.2 Hz, relaxable to ±0.5 Hz for small systems
  (docs/definitions.md).
- Three-phase unbalance, GB/T 15543-2008: u2 = |U2|/|U1|·100 from phasors, or from the
  three line-to-line magnitudes alone (IEC 61000-4-30 formula); the 95 % probability value
  must be <= 2 % and the maximum <= 4 % (§4.3, EN-9).
- THD and harmonic ratios, GB/T 14549-93 limits by voltage level (§4.3, EN-7).
- Plt from twelve Pst values, the cube mean (IEC 61000-4-15, EN-8).
- RMS aggregation with min/max and flag propagation (IEC 61000-4-30, §4.2, AGG-1).

A spectrum is an array whose index h along the last axis is the magnitude of order h
(index 0, DC, is ignored; index 1 is the fundamental), so one row per interval vectorises.
Every limit comparison rounds to ``COMPARE_DECIMALS`` so that float noise never moves a
value that sits exactly on a limit (a value at a limit complies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.qualification import COMPARE_DECIMALS

GB15945_LIMIT_HZ = 0.2
GB15945_RELAXED_LIMIT_HZ = 0.5
GB15543_LIMIT_PCT = 2.0  # 95 % probability value, normal operation at the PCC
GB15543_SHORT_LIMIT_PCT = 4.0  # maximum (short-time)
GB15543_USER_LIMIT_PCT = 1.3  # one connected user
GB15543_USER_SHORT_LIMIT_PCT = 2.6
PLT_PST_COUNT = 12  # 2 h of 10-min Pst

_A = np.exp(2j * np.pi / 3)


@dataclass(frozen=True)
class FrequencyResult:
    """Share of frequency values within ``limit_hz`` of nominal (GB/T 15945-2008)."""

    n: int
    within: int
    pct_within: float | None
    max_abs_deviation_hz: float | None
    limit_hz: float

    @property
    def all_within(self) -> bool:
        return self.within == self.n


@dataclass(frozen=True)
class UnbalanceResult:
    """GB/T 15543 assessment of a series of u2 values (usually a week of 10-min values)."""

    n: int
    prob95_pct: float | None
    max_pct: float | None
    limit_pct: float
    short_limit_pct: float

    @property
    def compliant(self) -> bool:
        if self.n == 0 or self.prob95_pct is None or self.max_pct is None:
            return False
        return _le(self.prob95_pct, self.limit_pct) and _le(self.max_pct, self.short_limit_pct)


@dataclass(frozen=True)
class HarmonicLimits:
    """GB/T 14549-93 phase-voltage limits in % of the fundamental."""

    nominal_kv: float
    thd_pct: float
    odd_pct: float
    even_pct: float


@dataclass(frozen=True)
class HarmonicCheck:
    """One spectrum against GB/T 14549; ``*_ok`` are True when at or under the limit."""

    limits: HarmonicLimits
    thd_pct: float
    max_odd_pct: float
    max_even_pct: float
    thd_ok: bool
    odd_ok: bool
    even_ok: bool

    @property
    def compliant(self) -> bool:
        return self.thd_ok and self.odd_ok and self.even_ok


@dataclass(frozen=True)
class RmsAggregate:
    """Per-group RMS aggregate with min, max, count and the IEC 61000-4-30 flag (§4.2)."""

    labels: np.ndarray
    rms: np.ndarray
    min: np.ndarray
    max: np.ndarray
    count: np.ndarray
    flagged: np.ndarray


# GB/T 14549-93 table (docs/definitions.md, [R]): (highest kV of the row, THD, odd HRU, even HRU).
# 20 kV is not in the table and takes the 6-10 kV row; 220 kV may follow the 110 kV values.
_GB14549_ROWS = (
    (1.0, 0.38, 5.0, 4.0, 2.0),
    (20.0, 10.0, 4.0, 3.2, 1.6),
    (66.0, 35.0, 3.0, 2.4, 1.2),
    (220.0, 110.0, 2.0, 1.6, 0.8),
)


def _round(x: np.ndarray | float) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64), COMPARE_DECIMALS)


def _le(value: float, limit: float) -> bool:
    return bool(_round(value) <= _round(limit))


def frequency_deviation_hz(freq_hz: np.ndarray, nominal_hz: float = 50.0) -> np.ndarray:
    """Δf = f − f_nominal, in Hz (GB/T 15945-2008)."""
    return np.asarray(freq_hz, dtype=np.float64) - nominal_hz


def frequency_check(
    freq_hz: np.ndarray, nominal_hz: float = 50.0, limit_hz: float = GB15945_LIMIT_HZ
) -> FrequencyResult:
    """How many values satisfy |Δf| <= ``limit_hz`` (0.2 Hz, or 0.5 Hz for a small system).

    GB/T 15945 states the limit for normal operation without a time share, so the result
    reports the share and the worst deviation and leaves the verdict to the caller.
    """
    dev = frequency_deviation_hz(freq_hz, nominal_hz)
    dev = dev[np.isfinite(dev)]
    within = int((_round(np.abs(dev)) <= _round(limit_hz)).sum())
    n = int(dev.size)
    return FrequencyResult(
        n=n,
        within=within,
        pct_within=within / n * 100.0 if n else None,
        max_abs_deviation_hz=float(np.abs(dev).max()) if n else None,
        limit_hz=limit_hz,
    )


def symmetrical_components(
    va: np.ndarray | complex, vb: np.ndarray | complex, vc: np.ndarray | complex
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U0, U1, U2) by the Fortescue transform of the three phasors (IEC 61000-4-30)."""
    va, vb, vc = (np.asarray(v, dtype=np.complex128) for v in (va, vb, vc))
    u0 = (va + vb + vc) / 3.0
    u1 = (va + _A * vb + _A**2 * vc) / 3.0
    u2 = (va + _A**2 * vb + _A * vc) / 3.0
    return u0, u1, u2


def unbalance_from_phasors(
    va: np.ndarray | complex, vb: np.ndarray | complex, vc: np.ndarray | complex
) -> np.ndarray:
    """Negative-sequence unbalance u2 = |U2| / |U1| · 100 % (GB/T 15543, EN-9a)."""
    _, u1, u2 = symmetrical_components(va, vb, vc)
    return np.asarray(np.abs(u2) / np.abs(u1) * 100.0)


def unbalance_from_line_magnitudes(
    uab: np.ndarray | float, ubc: np.ndarray | float, uca: np.ndarray | float
) -> np.ndarray:
    """u2 from line-to-line magnitudes only, for meters without phase angles (EN-9).

    β = Σ U⁴ / (Σ U²)², u2 = √((1 − √(3 − 6β)) / (1 + √(3 − 6β))) · 100. Line voltages
    carry no zero sequence, so this equals the phasor result.
    """
    uab, ubc, uca = (np.asarray(u, dtype=np.float64) for u in (uab, ubc, uca))
    beta = (uab**4 + ubc**4 + uca**4) / (uab**2 + ubc**2 + uca**2) ** 2
    root = np.sqrt(np.clip(3.0 - 6.0 * beta, 0.0, 1.0))  # float noise can leave [1/3, 1/2]
    return np.sqrt((1.0 - root) / (1.0 + root)) * 100.0


def prob95_value(values: np.ndarray) -> float | None:
    """The 95 % probability value: sort descending, drop the largest 5 %, take the next largest.

    The number dropped is ⌊0.05·n⌋, so a value is never discarded on rounding up (the Chinese
    PQ standards' "舍弃前面5%的大值" rule; the rounding is not stated in docs/definitions.md).
    """
    v = np.asarray(values, dtype=np.float64)
    v = np.sort(v[np.isfinite(v)])
    if v.size == 0:
        return None
    drop = int(np.floor(0.05 * v.size))
    return float(v[v.size - 1 - drop])


def unbalance_check(
    u2_pct: np.ndarray,
    *,
    limit_pct: float = GB15543_LIMIT_PCT,
    short_limit_pct: float = GB15543_SHORT_LIMIT_PCT,
) -> UnbalanceResult:
    """GB/T 15543: the 95 % probability value <= 2 % and the maximum <= 4 % (user: 1.3 / 2.6 %)."""
    v = np.asarray(u2_pct, dtype=np.float64)
    v = v[np.isfinite(v)]
    return UnbalanceResult(
        n=int(v.size),
        prob95_pct=prob95_value(v),
        max_pct=float(v.max()) if v.size else None,
        limit_pct=limit_pct,
        short_limit_pct=short_limit_pct,
    )


def thd_pct(spectrum: np.ndarray, max_order: int | None = None) -> np.ndarray:
    """THD = √(Σ_{h>=2} U_h²) / U_1 · 100 over orders 2..``max_order`` (all given if None)."""
    s = np.asarray(spectrum, dtype=np.float64)
    top = s.shape[-1] if max_order is None else min(s.shape[-1], max_order + 1)
    return np.asarray(np.sqrt(np.sum(s[..., 2:top] ** 2, axis=-1)) / s[..., 1] * 100.0)


def harmonic_ratio_pct(spectrum: np.ndarray) -> np.ndarray:
    """HRU_h = U_h / U_1 · 100 for every order (index h), fundamental included as 100."""
    s = np.asarray(spectrum, dtype=np.float64)
    return s / s[..., 1:2] * 100.0


def gb14549_limits(nominal_kv: float) -> HarmonicLimits:
    """GB/T 14549-93 THD / odd / even limits for a voltage level."""
    for top_kv, row_kv, thd, odd, even in _GB14549_ROWS:
        if nominal_kv <= top_kv:
            return HarmonicLimits(row_kv, thd, odd, even)
    raise ValueError(
        f"GB/T 14549 covers public networks up to 110 kV (220 kV by analogy), got {nominal_kv:g} kV"
    )


def gb14549_check(spectrum: np.ndarray, nominal_kv: float, max_order: int | None = None) -> HarmonicCheck:
    """One spectrum against GB/T 14549: THD and the worst odd and even ratio (EN-7)."""
    s = np.asarray(spectrum, dtype=np.float64)
    if s.ndim != 1 or s.size < 2:
        raise ValueError("gb14549_check takes one spectrum: index h = magnitude of order h")
    if max_order is not None:
        s = s[: max_order + 1]
    limits = gb14549_limits(nominal_kv)
    ratio = harmonic_ratio_pct(s)
    orders = np.arange(s.size)
    odd = ratio[(orders >= 3) & (orders % 2 == 1)]
    even = ratio[(orders >= 2) & (orders % 2 == 0)]
    thd = float(thd_pct(s))
    max_odd = float(odd.max()) if odd.size else 0.0
    max_even = float(even.max()) if even.size else 0.0
    return HarmonicCheck(
        limits=limits,
        thd_pct=thd,
        max_odd_pct=max_odd,
        max_even_pct=max_even,
        thd_ok=_le(thd, limits.thd_pct),
        odd_ok=_le(max_odd, limits.odd_pct),
        even_ok=_le(max_even, limits.even_pct),
    )


def plt_from_pst(pst: np.ndarray) -> np.ndarray:
    """Plt = ∛(Σ Pst³ / 12) over the last axis, which must hold twelve Pst (EN-8, IEC 61000-4-15)."""
    p = np.asarray(pst, dtype=np.float64)
    if p.shape[-1] != PLT_PST_COUNT:
        raise ValueError(f"Plt needs {PLT_PST_COUNT} Pst values along the last axis, got {p.shape[-1]}")
    return np.asarray(np.cbrt(np.sum(p**3, axis=-1) / PLT_PST_COUNT))


def rms_aggregate(
    values: np.ndarray,
    labels: np.ndarray | None = None,
    flags: np.ndarray | None = None,
) -> RmsAggregate:
    """√(mean of squares) per group, with min, max and count (IEC 61000-4-30, AGG-1).

    ``labels`` name each value's interval (e.g. ``time_ms // 600_000`` for clock-synchronised
    10-min intervals); None puts everything in one group. A group holding any flagged value
    is flagged (§4.2), so compliance statistics can leave it out. NaN values are skipped.
    """
    v = np.asarray(values, dtype=np.float64)
    lab = np.zeros(v.size, dtype=np.int64) if labels is None else np.asarray(labels)
    flg = np.zeros(v.size, dtype=bool) if flags is None else np.asarray(flags, dtype=bool)
    ok = np.isfinite(v)
    frame = pd.DataFrame({"label": lab[ok], "sq": v[ok] ** 2, "v": v[ok], "flag": flg[ok]})
    grouped = frame.groupby("label", sort=True)
    agg = grouped.agg(ms=("sq", "mean"), lo=("v", "min"), hi=("v", "max"), n=("v", "size"), f=("flag", "any"))
    return RmsAggregate(
        labels=agg.index.to_numpy(),
        rms=np.sqrt(agg["ms"].to_numpy(np.float64)),
        min=agg["lo"].to_numpy(np.float64),
        max=agg["hi"].to_numpy(np.float64),
        count=agg["n"].to_numpy(np.int64),
        flagged=agg["f"].to_numpy(bool),
    )

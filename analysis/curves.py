"""Equipment tolerance curves as tables: ITIC (revised 2000) and SEMI F47 (docs/definitions.md).

An event is a (magnitude in % of nominal, duration in s) point. Curves are step and line
segments; docs/definitions.md asks each boundary to be decided and pinned by tests:

- ITIC: a point exactly on either boundary, including the vertical steps at 3 ms, 20 ms,
  0.5 s and 10 s, is in the *no-interruption* region, as OPQ assigns it [V S24]. Between
  0.01 cycle (at 60 Hz) and 3 ms the upper boundary is a straight line in linear time, the
  reading that gives 170 % at 2 ms (ITIC-x). Before 0.01 cycle it stays at 500 %.
- SEMI F47: equipment must ride through a sag *to* the listed residual for durations *up
  to* the listed time, so a point on the curve, in magnitude or in time, is inside. The
  required curve (50 % from 50 ms to 0.2 s, 70 % to 0.5 s, 80 % to 1 s) says nothing outside
  50 ms–1 s ("not_covered"); the extended curve as OPQ codes it (anything for one cycle,
  50 % to 0.2 s, 70 % to 0.5 s, 80 % to 10 s, 90 % beyond) covers every duration.
"""

from __future__ import annotations

import numpy as np

from analysis.qualification import COMPARE_DECIMALS

ITIC_NO_INTERRUPTION = "no_interruption"
ITIC_NO_DAMAGE = "no_damage"
ITIC_PROHIBITED = "prohibited"
SEMI_INSIDE = "inside"
SEMI_OUTSIDE = "outside"
SEMI_NOT_COVERED = "not_covered"

ITIC_FIRST_S = 0.01 / 60.0  # 0.01 cycle at 60 Hz, where the published curve begins
SEMI_REQUIRED_FROM_S = 0.05
SEMI_REQUIRED_TO_S = 1.0


def _round(x: np.ndarray | float) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64), COMPARE_DECIMALS)


def itic_upper_pct(duration_s: np.ndarray | float) -> np.ndarray:
    """Upper ITIC boundary; at a step the higher side applies, so the step belongs to the envelope."""
    t = np.atleast_1d(np.asarray(duration_s, dtype=np.float64))
    rt = _round(t)
    first_ms = ITIC_FIRST_S * 1000.0
    return np.select(
        [
            rt <= _round(ITIC_FIRST_S),
            rt <= 0.001,
            rt <= 0.003,
            rt <= 0.5,
        ],
        [
            np.full_like(t, 500.0),
            500.0 + (200.0 - 500.0) * (t * 1000.0 - first_ms) / (1.0 - first_ms),
            200.0 + (140.0 - 200.0) * (t - 0.001) / 0.002,
            np.full_like(t, 120.0),
        ],
        default=110.0,
    )


def itic_lower_pct(duration_s: np.ndarray | float) -> np.ndarray:
    """Lower ITIC boundary; at a step the lower side applies (dropout allowed to 20 ms)."""
    rt = _round(np.atleast_1d(duration_s))
    return np.select([rt <= 0.02, rt <= 0.5, rt <= 10.0], [0.0, 70.0, 80.0], default=90.0)


def itic_regions(magnitude_pct: np.ndarray | float, duration_s: np.ndarray | float) -> np.ndarray:
    """ITIC region per event: prohibited above the upper curve, no_damage below the lower one."""
    u = _round(np.atleast_1d(magnitude_pct))
    t = np.atleast_1d(np.asarray(duration_s, dtype=np.float64))
    upper = _round(itic_upper_pct(t))
    lower = _round(itic_lower_pct(t))
    return np.select(
        [u > upper, u < lower], [ITIC_PROHIBITED, ITIC_NO_DAMAGE], default=ITIC_NO_INTERRUPTION
    ).astype(object)


def itic_region(magnitude_pct: float, duration_s: float) -> str:
    """One event's ITIC region, see ``itic_regions``."""
    return str(itic_regions(magnitude_pct, duration_s)[0])


def semi_f47_required_pct(duration_s: np.ndarray | float) -> np.ndarray:
    """Required SEMI F47-0706 residual; NaN outside 50 ms–1 s where nothing is required."""
    rt = _round(np.atleast_1d(duration_s))
    return np.select(
        [rt < SEMI_REQUIRED_FROM_S, rt <= 0.2, rt <= 0.5, rt <= SEMI_REQUIRED_TO_S],
        [np.nan, 50.0, 70.0, 80.0],
        default=np.nan,
    )


def semi_f47_extended_pct(duration_s: np.ndarray | float, freq_hz: float = 50.0) -> np.ndarray:
    """Extended curve as OPQ codes it: 0 % for one cycle, then 50 / 70 / 80 / 90 % [V-code S24]."""
    rt = _round(np.atleast_1d(duration_s))
    return np.select(
        [rt <= _round(1.0 / freq_hz), rt <= 0.2, rt <= 0.5, rt <= 10.0],
        [0.0, 50.0, 70.0, 80.0],
        default=90.0,
    )


def semi_f47_regions(
    residual_pct: np.ndarray | float,
    duration_s: np.ndarray | float,
    *,
    extended: bool = False,
    freq_hz: float = 50.0,
) -> np.ndarray:
    """``inside`` when the sag is one the equipment must ride through (at or above the curve),
    ``outside`` when deeper (OPQ's violation polygon), ``not_covered`` off the required curve."""
    u = _round(np.atleast_1d(residual_pct))
    curve = semi_f47_extended_pct(duration_s, freq_hz) if extended else semi_f47_required_pct(duration_s)
    curve = _round(curve)
    return np.select(
        [np.isnan(curve), u >= curve], [SEMI_NOT_COVERED, SEMI_INSIDE], default=SEMI_OUTSIDE
    ).astype(object)


def semi_f47_region(
    residual_pct: float, duration_s: float, *, extended: bool = False, freq_hz: float = 50.0
) -> str:
    """One sag against SEMI F47, see ``semi_f47_regions``."""
    return str(semi_f47_regions(residual_pct, duration_s, extended=extended, freq_hz=freq_hz)[0])

"""Comprehensive voltage qualification rate (综合电压合格率) and class aggregation.

Utilities report one network figure built from the A/B/C/D monitoring-point classes. Two
weightings are in use and both are provided: the SGCC rule 0.5·A + 0.5·mean(B, C, D) [R]
and the older city-grid rule 0.6·A + 0.2·B + 0.2·C [V S3]. Inside one class, points are
combined either by the arithmetic mean of their rates (the S3 wording) or by pooling their
minutes (Σ out / Σ monitored); the two differ, so the caller picks one by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.qualification import vqr_pct


def comprehensive_vqr_pct(v_a: float, v_b: float, v_c: float, v_d: float) -> float:
    """SGCC comprehensive rate: 0.5·V_A + 0.5·(V_B + V_C + V_D)/3 (VQR-4)."""
    return 0.5 * v_a + 0.5 * (v_b + v_c + v_d) / 3.0


def comprehensive_vqr_legacy_pct(v_a: float, v_b: float, v_c: float) -> float:
    """Older city-grid rate: 0.6·A + 0.2·B + 0.2·C, A = 6–10 kV buses (VQR-4)."""
    return 0.6 * v_a + 0.2 * v_b + 0.2 * v_c


def class_vqr_mean_pct(point_rates_pct: Sequence[float | None]) -> float | None:
    """Arithmetic mean of the point rates, "Σ各测点合格率 / 监测点总数".

    Points with no monitored time (rate None) have no rate and are left out of the count;
    None when no point has one.
    """
    rates = np.array([r for r in point_rates_pct if r is not None], dtype=np.float64)
    return float(rates.mean()) if rates.size else None


def class_vqr_pooled_pct(
    over_min: Sequence[float], under_min: Sequence[float], monitored_min: Sequence[float]
) -> float | None:
    """Time-pooled rate (1 − Σ out minutes / Σ monitored minutes) × 100.

    Weights each point by its monitored time, so a point that reported for a day weighs less
    than one that reported all month; the arithmetic mean gives them equal weight.
    """
    return vqr_pct(float(np.sum(over_min)), float(np.sum(under_min)), float(np.sum(monitored_min)))

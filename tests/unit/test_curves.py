"""ITIC and SEMI F47 regions against docs/definitions.md (ITIC-x, SEMI-x, OPQ points, boundaries)."""

import numpy as np
import pytest

from analysis.curves import (
    ITIC_NO_DAMAGE,
    ITIC_NO_INTERRUPTION,
    ITIC_PROHIBITED,
    SEMI_INSIDE,
    SEMI_NOT_COVERED,
    SEMI_OUTSIDE,
    itic_lower_pct,
    itic_region,
    itic_regions,
    itic_upper_pct,
    semi_f47_region,
    semi_f47_regions,
)


@pytest.mark.parametrize(
    ("u", "t", "region"),
    [
        (50, 0.100, ITIC_NO_DAMAGE),
        (75, 0.100, ITIC_NO_INTERRUPTION),
        (0, 0.010, ITIC_NO_INTERRUPTION),
        (115, 0.3, ITIC_NO_INTERRUPTION),
        (115, 1.0, ITIC_PROHIBITED),
        (85, 12.0, ITIC_NO_DAMAGE),
        (130, 0.002, ITIC_NO_INTERRUPTION),
    ],
    ids=["ITIC-1", "ITIC-2", "ITIC-3", "ITIC-4", "ITIC-5", "ITIC-6", "ITIC-7"],
)
def test_itic_points(u, t, region):
    assert itic_region(u, t) == region


@pytest.mark.parametrize(
    ("u", "t", "region"),
    [
        # on the sloped line: 170 % at 2 ms, 200 % at 1 ms, 500 % at 0.01 cycle
        (170, 0.002, ITIC_NO_INTERRUPTION),
        (170.01, 0.002, ITIC_PROHIBITED),
        (200, 0.001, ITIC_NO_INTERRUPTION),
        (500, 0.01 / 60, ITIC_NO_INTERRUPTION),
        (501, 0.01 / 60, ITIC_PROHIBITED),
        # vertical steps belong to the no-interruption region (OPQ's choice)
        (140, 0.003, ITIC_NO_INTERRUPTION),
        (141, 0.003, ITIC_PROHIBITED),
        (130, 0.0031, ITIC_PROHIBITED),
        (120, 0.5, ITIC_NO_INTERRUPTION),
        (120.1, 0.5, ITIC_PROHIBITED),
        (110, 0.6, ITIC_NO_INTERRUPTION),
        (110, 100.0, ITIC_NO_INTERRUPTION),
        (0, 0.020, ITIC_NO_INTERRUPTION),
        (69.9, 0.0201, ITIC_NO_DAMAGE),
        (70, 0.0201, ITIC_NO_INTERRUPTION),
        (70, 0.5, ITIC_NO_INTERRUPTION),
        (79.9, 0.501, ITIC_NO_DAMAGE),
        (80, 10.0, ITIC_NO_INTERRUPTION),
        (89.9, 10.001, ITIC_NO_DAMAGE),
        (90, 3600.0, ITIC_NO_INTERRUPTION),
    ],
)
def test_itic_boundaries(u, t, region):
    assert itic_region(u, t) == region


def test_itic_vectorised_and_curves():
    regions = itic_regions(np.array([50, 75, 115]), np.array([0.1, 0.1, 1.0]))
    assert regions.tolist() == [ITIC_NO_DAMAGE, ITIC_NO_INTERRUPTION, ITIC_PROHIBITED]
    assert itic_upper_pct(np.array([0.001, 0.002, 0.003, 0.1, 0.5, 1.0])) == pytest.approx(
        [200, 170, 140, 120, 120, 110]
    )
    assert itic_lower_pct(np.array([0.0, 0.02, 0.1, 0.5, 5, 10, 11])).tolist() == [0, 0, 70, 70, 80, 80, 90]


@pytest.mark.parametrize(
    ("u", "t", "extended", "region"),
    [
        (55, 0.150, False, SEMI_INSIDE),
        (45, 0.150, False, SEMI_OUTSIDE),
        (75, 0.300, False, SEMI_INSIDE),
        (65, 0.300, False, SEMI_OUTSIDE),
        (85, 5.0, True, SEMI_INSIDE),
        (85, 20.0, True, SEMI_OUTSIDE),
    ],
    ids=["SEMI-1", "SEMI-2", "SEMI-3", "SEMI-4", "SEMI-5", "SEMI-6"],
)
def test_semi_points(u, t, extended, region):
    assert semi_f47_region(u, t, extended=extended) == region


@pytest.mark.parametrize(
    ("u", "t", "region"),
    [
        (50, 0.05, SEMI_INSIDE),  # on the curve counts as ride-through required
        (49.9, 0.05, SEMI_OUTSIDE),
        (50, 0.2, SEMI_INSIDE),  # 0.2 s still belongs to the 50 % step
        (50, 0.201, SEMI_OUTSIDE),
        (70, 0.5, SEMI_INSIDE),
        (79.9, 1.0, SEMI_OUTSIDE),
        (80, 1.0, SEMI_INSIDE),
        (10, 0.04, SEMI_NOT_COVERED),  # nothing is required below 50 ms
        (85, 5.0, SEMI_NOT_COVERED),  # nor beyond 1 s on the required curve
    ],
)
def test_semi_required_boundaries(u, t, region):
    assert semi_f47_region(u, t) == region


@pytest.mark.parametrize(
    ("u", "t", "freq", "region"),
    [
        # OPQ's test file: 60 Hz, durations in cycles (index id 47235871021)
        (49.9, 0.100, 60.0, SEMI_OUTSIDE),  # point_in_poly(ms_to_c(100), 49.9) is a violation
        (50.1, 1.1 / 60, 60.0, SEMI_INSIDE),  # point_in_poly(1.1, 50.1) is not
        (0.0, 0.0, 60.0, SEMI_INSIDE),  # point_in_poly(0, 0): under one cycle, no violation
        (0.0, 1 / 60, 60.0, SEMI_INSIDE),  # point_in_poly(1, 0)
        (0.0, 0.02, 50.0, SEMI_INSIDE),  # one cycle at 50 Hz
        (49.0, 0.021, 50.0, SEMI_OUTSIDE),
        (80, 10.0, 50.0, SEMI_INSIDE),
        (89.9, 10.01, 50.0, SEMI_OUTSIDE),
        (90, 1000.0, 50.0, SEMI_INSIDE),
    ],
)
def test_semi_extended_and_opq_points(u, t, freq, region):
    assert semi_f47_region(u, t, extended=True, freq_hz=freq) == region


def test_semi_vectorised():
    got = semi_f47_regions(np.array([55, 45, 85]), np.array([0.15, 0.15, 5.0]))
    assert got.tolist() == [SEMI_INSIDE, SEMI_OUTSIDE, SEMI_NOT_COVERED]

"""The EN 50160 profile against the worked examples of docs/definitions.md EN-1..EN-7."""

import numpy as np
import pytest

from analysis.en50160 import (
    EN50160_HARMONIC_LIMITS_PCT,
    classify_dip,
    classify_dips,
    classify_swell,
    dip_table,
    flicker_check,
    frequency_check,
    harmonics_check,
    swell_table,
    ten_minute_values,
    unbalance_check,
    voltage_variation_check,
)

WEEK = 1008


def week(low: int, low_v: float = 200.0) -> np.ndarray:
    v = np.full(WEEK, 230.0)
    v[:low] = low_v
    return v


@pytest.mark.parametrize(
    ("low", "pct", "passed"),
    [(50, 95.0397, True), (51, 94.9405, False)],
    ids=["EN-1", "EN-2"],
)
def test_en1_en2(low, pct, passed):
    r = voltage_variation_check(week(low), 230.0)
    assert r.pct_within == pytest.approx(pct, abs=5e-5)
    assert r.all_within_wide  # 200 V is inside [195.5, 253]
    assert r.passed is passed


def test_en3_single_value_above_253_fails_the_100pct_band():
    v = week(0)
    v[0] = 254.0
    r = voltage_variation_check(v, 230.0)
    assert r.pct_within > 99.0 and not r.all_within_wide and not r.passed
    v[0] = 253.0  # exactly +10 % is within both bands
    assert voltage_variation_check(v, 230.0).passed


def test_lv_wide_band_lower_edge():
    assert voltage_variation_check(week(10, 195.5), 230.0).all_within_wide
    assert not voltage_variation_check(week(10, 195.4), 230.0).all_within_wide


@pytest.mark.parametrize(
    ("exclude", "n", "pct", "passed"),
    [(True, 998, 95.4910, True), (False, 1008, 94.5437, False)],
    ids=["EN-4-excluded", "EN-4-included"],
)
def test_en4_flagging(exclude, n, pct, passed):
    flags = np.zeros(WEEK, bool)
    flags[:10] = True  # 10 of the 55 low values were flagged by a dip
    r = voltage_variation_check(week(55), 230.0, flags, exclude_flagged=exclude)
    assert (r.n, r.n_flagged) == (n, 10)
    assert r.pct_within == pytest.approx(pct, abs=5e-5)
    assert r.passed is passed


def test_mv_needs_99pct():
    r = voltage_variation_check(week(11, 200.0), 230.0, level="MV")  # 997/1008 = 98.9 %
    assert not r.passed
    assert voltage_variation_check(week(10, 200.0), 230.0, level="MV").passed
    with pytest.raises(ValueError, match="level"):
        voltage_variation_check(week(0), 230.0, level="HV")  # type: ignore[arg-type]


@pytest.mark.parametrize(("outside", "passed"), [(5, True), (6, False)], ids=["EN-5-5", "EN-5-6"])
def test_en5_frequency(outside, passed):
    f = np.full(1000, 50.0)
    f[:outside] = 50.6  # outside 49.5-50.5, inside 47-52
    r = frequency_check(f)
    assert r.pct_within == pytest.approx(100.0 - outside / 10)
    assert r.passed is passed


def test_frequency_100pct_band_and_islands():
    f = np.full(1000, 50.0)
    f[0] = 46.9
    assert not frequency_check(f).passed
    f[0] = 47.0
    assert frequency_check(f).passed
    f[:50] = 51.0  # 2 % off in an island: within ±2 % exactly, 95 % rule
    assert frequency_check(f, synchronous=False).passed


def test_flicker_and_unbalance_share():
    plt = np.ones(84)
    plt[:4] = 1.2  # 80/84 = 95.2 %
    assert flicker_check(plt).passed
    plt[:5] = 1.2
    assert not flicker_check(plt).passed
    u2 = np.full(1008, 1.0)
    u2[:51] = 2.5
    assert not unbalance_check(u2).passed
    assert unbalance_check(u2[1:]).passed  # 50/1007 over


@pytest.mark.parametrize(
    ("u", "t", "cell"),
    [
        (75, 0.150, "B1"),
        (30, 0.800, "D3"),
        (85, 0.200, "A1"),
        (80, 0.300, "A2"),
        (40, 5.0, "C4"),
        (3, 2.0, "X4"),
        (89.99, 0.010, "A1"),
        (70, 0.201, "B2"),
        (5, 60.0, "D5"),
        (4.99, 0.5, "X2"),
        (90, 0.1, None),  # not a dip
        (50, 0.009, None),  # shorter than 10 ms
        (50, 61.0, None),  # longer than a minute
    ],
)
def test_en6_dips(u, t, cell):
    assert classify_dip(u, t) == cell


@pytest.mark.parametrize(
    ("u", "t", "cell"),
    [
        (125, 0.3, "S1"),
        (115, 2.0, "T2"),
        (120, 0.5, "S1"),
        (119.9, 0.5001, "T2"),
        (111, 60.0, "T3"),
        (110, 1.0, None),  # exactly 110 % is not a swell
        (130, 70.0, None),
    ],
)
def test_en6_swells(u, t, cell):
    assert classify_swell(u, t) == cell


def test_swell_vendor_column():
    assert classify_swell(130, 70.0, include_over_60s=True) == "S4"


def test_dip_and_swell_tables():
    table = dip_table(np.array([75, 30, 85, 80, 40, 3, 95]), np.array([0.15, 0.8, 0.2, 0.3, 5, 2, 1]))
    assert table.loc["B", 1] == 1 and table.loc["D", 3] == 1 and table.loc["A", 1] == 1
    assert table.to_numpy().sum() == 6
    assert classify_dips(np.array([75, 95]), np.array([0.15, 1.0])).tolist() == ["B1", None]
    swells = swell_table(np.array([125, 115]), np.array([0.3, 2.0]))
    assert (swells.loc["S", 1], swells.loc["T", 2], swells.to_numpy().sum()) == (1, 1, 2)


def en7_spectrum(n_orders: int = 41) -> np.ndarray:
    s = np.zeros(n_orders)
    s[[1, 3, 5, 7]] = [230.0, 4.6, 9.2, 6.9]
    return s


def test_en7_harmonics_pass():
    r = harmonics_check(en7_spectrum())
    assert (r.n, r.n1, r.n2) == (1, 0, 0) and r.passed


def test_harmonic_limit_table():
    assert EN50160_HARMONIC_LIMITS_PCT[5] == 6.0 and EN50160_HARMONIC_LIMITS_PCT[3] == 5.0
    assert EN50160_HARMONIC_LIMITS_PCT[24] == 0.5 and 26 not in EN50160_HARMONIC_LIMITS_PCT
    assert len(EN50160_HARMONIC_LIMITS_PCT) == 24


def test_harmonics_n1_n2_five_percent_rule():
    """100 intervals: 5 with the 5th at 6.1 % and 5 with THD 8.5 % pass; 6 of either fail."""
    spectra = np.tile(en7_spectrum(), (100, 1))
    spectra[:5, 5] = 230 * 0.061
    spectra[5:10, 40] = 230 * 0.075  # order 40 has no individual limit but counts in THD
    r = harmonics_check(spectra)
    assert (r.n1, r.n2, r.passed) == (5, 5, True)
    spectra[10, 5] = 230 * 0.061
    assert not harmonics_check(spectra).passed
    flags = np.zeros(100, bool)
    flags[10] = True
    flagged = harmonics_check(spectra, flags)  # the flagged interval leaves N and N1
    assert (flagged.n, flagged.n_flagged, flagged.n1) == (99, 1, 5)


def test_exactly_on_harmonic_limit_passes():
    s = en7_spectrum()
    s[5] = 230 * 0.06
    assert harmonics_check(s).n1 == 0


def test_ten_minute_values_sync_to_tick_and_flag():
    t = np.array([0, 200, 599_800, 600_000, 600_200], dtype=np.int64) + 1_700_000_400_000
    v = np.array([230.0, 232.0, 228.0, 240.0, 220.0])
    df = ten_minute_values(t, v, np.array([0, 0, 0, 0, 1], bool))
    assert df["start_ms"].tolist() == [1_700_000_400_000, 1_700_001_000_000]
    assert df["count"].tolist() == [3, 2]
    assert df["flagged"].tolist() == [False, True]
    assert df["rms"].iloc[1] == pytest.approx(np.sqrt((240**2 + 220**2) / 2))

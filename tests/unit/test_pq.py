"""PQ indices against docs/definitions.md–4.3: EN-7, EN-8, EN-9, AGG-1, GB/T 15945, GB/T 15543, GB/T 14549."""

import numpy as np
import pytest

from analysis.pq import (
    GB15945_RELAXED_LIMIT_HZ,
    frequency_check,
    gb14549_check,
    gb14549_limits,
    harmonic_ratio_pct,
    plt_from_pst,
    prob95_value,
    rms_aggregate,
    symmetrical_components,
    thd_pct,
    unbalance_check,
    unbalance_from_line_magnitudes,
    unbalance_from_phasors,
)


def polar(mag, deg):
    return mag * np.exp(1j * np.deg2rad(deg))


def en7_spectrum():
    """EN-7: U1 = 230 V, U3 = 4.6 V, U5 = 9.2 V, U7 = 6.9 V."""
    s = np.zeros(8)
    s[[1, 3, 5, 7]] = [230.0, 4.6, 9.2, 6.9]
    return s


def test_en7_thd():
    assert float(thd_pct(en7_spectrum())) == pytest.approx(5.3852, abs=5e-5)
    assert harmonic_ratio_pct(en7_spectrum())[[3, 5, 7]] == pytest.approx([2.0, 4.0, 3.0])


def test_thd_vectorised_and_order_cut():
    spectra = np.vstack([en7_spectrum(), en7_spectrum()])
    assert thd_pct(spectra) == pytest.approx([5.385165, 5.385165], abs=1e-6)
    assert float(thd_pct(en7_spectrum(), max_order=5)) == pytest.approx(np.hypot(2, 4))


def test_en7_gb14549_at_380v():
    """THD 5.385 % > 5 % fails; odd content of exactly 4 % sits on the limit and passes."""
    check = gb14549_check(en7_spectrum(), 0.38)
    assert not check.thd_ok
    assert check.odd_ok and check.even_ok
    assert check.max_odd_pct == pytest.approx(4.0)
    assert not check.compliant


@pytest.mark.parametrize(
    ("kv", "limits"),
    [
        (0.38, (5.0, 4.0, 2.0)),
        (6, (4.0, 3.2, 1.6)),
        (10, (4.0, 3.2, 1.6)),
        (20, (4.0, 3.2, 1.6)),
        (35, (3.0, 2.4, 1.2)),
        (66, (3.0, 2.4, 1.2)),
        (110, (2.0, 1.6, 0.8)),
        (220, (2.0, 1.6, 0.8)),
    ],
)
def test_gb14549_table(kv, limits):
    got = gb14549_limits(kv)
    assert (got.thd_pct, got.odd_pct, got.even_pct) == limits


def test_gb14549_out_of_scope():
    with pytest.raises(ValueError, match="110 kV"):
        gb14549_limits(500)


def test_gb14549_even_limit():
    s = np.zeros(5)
    s[1], s[2] = 10_000.0, 161.0  # 1.61 % even at 10 kV, limit 1.6 %
    assert not gb14549_check(s, 10).even_ok
    s[2] = 160.0
    assert gb14549_check(s, 10).even_ok


@pytest.mark.parametrize(
    ("pst", "expect"),
    [
        ([0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 0.4, 0.5, 0.6, 0.7, 2.0], 1.0375),
        ([1.0] * 12, 1.0),
    ],
    ids=["EN-8", "EN-8-ones"],
)
def test_en8_plt(pst, expect):
    assert float(plt_from_pst(np.array(pst))) == pytest.approx(expect, abs=5e-5)


def test_plt_needs_twelve():
    with pytest.raises(ValueError, match="12"):
        plt_from_pst(np.ones(11))
    assert plt_from_pst(np.ones((3, 12))) == pytest.approx([1.0, 1.0, 1.0])


def test_en9a_phasors_both_formulas():
    va, vb, vc = polar(230, 0), polar(225, -120), polar(235, 120)
    assert float(unbalance_from_phasors(va, vb, vc)) == pytest.approx(1.2551, abs=5e-5)
    lines = np.abs([va - vb, vb - vc, vc - va])
    assert lines == pytest.approx([394.049, 398.403, 402.710], abs=5e-4)
    assert float(unbalance_from_line_magnitudes(*lines)) == pytest.approx(1.2551, abs=5e-5)


def test_en9b_line_magnitudes():
    u2 = float(unbalance_from_line_magnitudes(400, 390, 410))
    assert u2 == pytest.approx(2.8880, abs=5e-5)
    single = unbalance_check(np.array([u2]))
    assert single.prob95_pct == pytest.approx(u2) and not single.compliant  # > 2 %, although < 4 %


def test_balanced_is_zero():
    assert float(unbalance_from_line_magnitudes(400, 400, 400)) == 0.0
    assert float(unbalance_from_phasors(polar(230, 0), polar(230, -120), polar(230, 120))) == pytest.approx(
        0, abs=1e-12
    )
    u0, u1, u2 = symmetrical_components(polar(230, 0), polar(230, -120), polar(230, 120))
    assert (abs(u0), abs(u1), abs(u2)) == pytest.approx((0, 230, 0), abs=1e-9)


def test_prob95_drops_largest_five_percent():
    values = np.arange(1, 21, dtype=float)  # 20 values: drop 1, keep 19
    assert prob95_value(values) == 19.0
    assert prob95_value(np.arange(1, 20, dtype=float)) == 19.0  # 19 values: floor(0.95) = 0 dropped
    assert prob95_value(np.array([])) is None


@pytest.mark.parametrize(
    ("values", "compliant"),
    [
        ([1.0] * 95 + [3.9] * 5, True),  # 95 % value 1.0, maximum 3.9
        ([1.0] * 95 + [4.1] * 5, False),  # maximum over 4 %
        ([1.0] * 94 + [2.1] * 6, False),  # 95 % value 2.1
        ([2.0] * 100, True),  # exactly 2 % passes
    ],
)
def test_gb15543_assessment(values, compliant):
    assert unbalance_check(np.array(values)).compliant is compliant


def test_gb15945_frequency():
    f = np.array([50.0, 50.2, 49.8, 50.21, 49.6, np.nan])
    strict = frequency_check(f)
    assert (strict.n, strict.within) == (5, 3)  # 50.2 and 49.8 are exactly at ±0.2 Hz
    assert strict.max_abs_deviation_hz == pytest.approx(0.4)
    assert not strict.all_within
    relaxed = frequency_check(f, limit_hz=GB15945_RELAXED_LIMIT_HZ)
    assert relaxed.all_within and relaxed.pct_within == 100.0


def test_agg1_rms():
    agg = rms_aggregate(np.array([230.0, 231.0, 229.0, 240.0]))
    assert agg.rms[0] == pytest.approx(232.5414, abs=5e-5)
    assert np.mean([230, 231, 229, 240]) == 232.5  # the arithmetic mean differs
    assert (agg.min[0], agg.max[0], agg.count[0], agg.flagged[0]) == (229.0, 240.0, 4, False)


def test_aggregate_groups_and_flag_propagation():
    values = np.array([230.0, 231.0, 229.0, 240.0, np.nan])
    agg = rms_aggregate(values, labels=np.array([0, 0, 1, 1, 1]), flags=np.array([0, 0, 0, 1, 0], bool))
    assert agg.labels.tolist() == [0, 1]
    assert agg.rms == pytest.approx([np.sqrt((230**2 + 231**2) / 2), np.sqrt((229**2 + 240**2) / 2)])
    assert agg.flagged.tolist() == [False, True]
    assert agg.count.tolist() == [2, 2]

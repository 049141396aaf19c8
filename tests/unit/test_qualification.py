"""Voltage qualification against the worked examples of docs/definitions.md"""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from analysis.qualification import classify_minutes, minute_means, outage_minute_mask, vqr_pct
from analysis.rollup import RollupPolicy, SiteSpec, rollup_site
from core.calendar import MINUTE_MS, day_start_ms
from core.limits import Limits, default_limits, validate_limits

TZ = "Asia/Shanghai"
DAY = date(2026, 10, 5)


@pytest.mark.parametrize(
    ("kv", "phases", "band", "nominal"),
    [
        (10, 3, (9300.0, 10700.0), 10000.0),
        (0.38, 3, (353.4, 406.6), 380.0),
        (0.22, 1, (198.0, 235.4), 220.0),
    ],
)
def test_gb12325_default_bands(kv, phases, band, nominal):
    lower, upper = default_limits(kv, phases).band(nominal)
    assert (lower, upper) == pytest.approx(band)


def test_vqr3_35kv_limit_sum():
    assert validate_limits(35, 3, 7, 3) == Limits(7, 3)
    with pytest.raises(ValueError, match="10 %"):
        validate_limits(35, 3, 7, 5)
    assert validate_limits(35, 3, 5, 5).band(35.0) == pytest.approx((33.25, 36.75))


def test_vqr2_boundary_is_qualified():
    """Strict policy: exactly at a limit is qualified; 2 of 5 out gives 60 %."""
    means = np.array([235.4, 235.5, 198.0, 197.9, 220.0])
    lower, upper = Limits(7, 10).band(220.0)
    monitored, over, under, _, _ = classify_minutes(means, np.zeros(5, bool), lower, upper)
    assert (over.sum(), under.sum()) == (1, 1)
    assert vqr_pct(over.sum(), under.sum(), monitored.sum()) == pytest.approx(60.0)


def _vqr1_day(outage: bool):
    """VQR-1: 10 kV, 30 min over, 12 under, 60-minute outage, the rest in band."""
    start = day_start_ms(DAY, TZ)
    values = np.full(1440, 10000.0)
    values[100:130] = 10800.0
    values[200:212] = 9200.0
    keep = np.ones(1440, bool)
    if outage:
        keep[600:660] = False
    ts = start + np.arange(1440, dtype=np.int64) * MINUTE_MS
    readings = pd.DataFrame({"time": ts[keep], "ua": values[keep], "interval_s": 60.0})
    events = pd.DataFrame(
        {
            "time": [start + 600 * MINUTE_MS, start + 660 * MINUTE_MS] if outage else [],
            "type": ["power_off", "power_on"] if outage else [],
            "event_id": ["e1", "e2"] if outage else [],
        }
    )
    return readings, events


@pytest.mark.parametrize(
    ("outage", "as_under", "expect"),
    [(True, False, 96.9565), (True, True, 92.9167), (False, False, 97.0833)],
    ids=["VQR-1a", "VQR-1b", "VQR-1c"],
)
def test_vqr1(outage, as_under, expect):
    readings, events = _vqr1_day(outage)
    spec = SiteSpec("A", 1, 10000.0, Limits(7, 7))
    policy = RollupPolicy(TZ, outage_as_under=as_under)
    now = day_start_ms(DAY, TZ) + 10 * 86_400_000
    result = rollup_site(spec, readings, events, [DAY], policy, now)
    row = result.vq[result.vq.phase == "all"].iloc[0]
    assert row.vqr_pct == pytest.approx(expect, abs=5e-5)
    assert row.outage_min == (60 if outage else 0)
    assert row.missing_min == 0
    rel = result.rel.iloc[0]
    assert rel.outage_s == (3600.0 if outage else 0.0)
    assert rel.outages_sustained == int(outage)


def test_fifteen_minute_reading_stands_for_fifteen_minutes():
    start = day_start_ms(DAY, TZ)
    means = minute_means(
        np.array([start, start + 15 * MINUTE_MS]),
        np.array([230.0, 240.0]),
        np.array([900.0, 900.0]),
        start,
        40,
    )
    assert np.all(means[:15] == 230.0) and np.all(means[15:30] == 240.0)
    assert np.isnan(means[30:]).all()


def test_subminute_readings_average_into_their_minute():
    start = 0
    ts = np.arange(0, 120_000, 3000)  # 3 s readings over two minutes
    values = np.where(ts < 60_000, 200.0, 250.0)
    means = minute_means(ts, values, np.full(ts.size, 3.0), start, 2)
    assert means.tolist() == [200.0, 250.0]


def test_outage_minutes_overlap_rule():
    """12:00:00 to 12:45:00 covers 45 minutes; 12:00:30 to 12:01:10 touches two."""
    assert outage_minute_mask([(720 * MINUTE_MS, 765 * MINUTE_MS)], 0, 1440).sum() == 45
    assert outage_minute_mask([(720 * MINUTE_MS + 30_000, 721 * MINUTE_MS + 10_000)], 0, 1440).sum() == 2


def test_missing_minutes_are_not_monitored():
    start = day_start_ms(DAY, TZ)
    ts = start + np.arange(1000, dtype=np.int64) * MINUTE_MS
    readings = pd.DataFrame({"time": ts, "ua": 220.0, "ub": 221.0, "uc": 219.0, "interval_s": 60.0})
    spec = SiteSpec("A", 3, 220.0, Limits(7, 7))
    result = rollup_site(
        spec,
        readings,
        pd.DataFrame(columns=["time", "type", "event_id"]),
        [DAY],
        RollupPolicy(TZ),
        start + 5 * 86_400_000,
    )
    pooled = result.vq[result.vq.phase == "all"].iloc[0]
    assert pooled.monitored_min == 3000 and pooled.missing_min == 440
    assert pooled.vqr_pct == 100.0
    assert set(result.vq.phase) == {"a", "b", "c", "all"}


def test_readings_below_ten_percent_are_an_outage():
    start = day_start_ms(DAY, TZ)
    ts = start + np.arange(1440, dtype=np.int64) * MINUTE_MS
    ua = np.full(1440, 220.0)
    ua[300:320] = 5.0
    readings = pd.DataFrame({"time": ts, "ua": ua, "interval_s": 60.0})
    result = rollup_site(
        SiteSpec("A", 1, 220.0, Limits(7, 10)),
        readings,
        pd.DataFrame(columns=["time", "type", "event_id"]),
        [DAY],
        RollupPolicy(TZ),
        start + 2 * 86_400_000,
    )
    assert result.vq.iloc[-1].outage_min == 20
    assert result.rel.iloc[0].outage_s == 1200.0
    assert [o.source for o in result.outages] == ["reading"]


def test_line_voltages_for_three_wire_meters():
    start = day_start_ms(DAY, TZ)
    ts = start + np.arange(1440, dtype=np.int64) * MINUTE_MS
    uab = np.full(1440, 100.0)
    uab[:10] = 108.0  # +8 % of 100 V line nominal (57.735 V phase)
    readings = pd.DataFrame({"time": ts, "uab": uab, "ubc": 100.0, "uca": 100.0, "interval_s": 60.0})
    result = rollup_site(
        SiteSpec("A", 3, 57.735, Limits(7, 7)),
        readings,
        pd.DataFrame(columns=["time", "type", "event_id"]),
        [DAY],
        RollupPolicy(TZ),
        start + 2 * 86_400_000,
    )
    ab = result.vq[result.vq.phase == "ab"].iloc[0]
    assert ab.over_min == 10 and ab.monitored_min == 1440

"""The daily power-quality roll-up and the EN 50160 counts of the voltage roll-up."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from analysis.pq_daily import pq_daily
from analysis.rollup import RollupPolicy, SiteSpec, rollup_site
from core.calendar import MINUTE_MS, day_start_ms
from core.limits import Limits

TZ = "Asia/Shanghai"
DAY = date(2026, 10, 5)
NO_EVENTS = pd.DataFrame({"time": pd.Series([], dtype="int64"), "type": [], "event_id": []})


def test_frequency_unbalance_thd_plt_counts():
    start = day_start_ms(DAY, TZ)
    readings = pd.DataFrame(
        {
            "time": start + np.arange(4) * 600_000,
            "f": [50.0, 50.2, 50.21, 49.7],  # 50.2 is exactly at the limit: complies
            "unb": [1.0, 2.0, 2.5, np.nan],
            "thd_ua": [3.0, 5.0, 5.1, 1.0],
            "thd_ub": [6.0, np.nan, 1.0, 1.0],
            "plt": [0.5, 1.0, 1.2, np.nan],
        }
    )
    row = pq_daily(readings, NO_EVENTS, [DAY], TZ, 0.38).iloc[0]
    assert (row.f_n, row.f_out) == (4, 2) and row.f_dev_max == pytest.approx(0.3)
    assert (row.unb_n, row.unb_over, row.unb_max) == (3, 1, 2.5)
    assert (row.thd_n, row.thd_over, row.thd_max) == (4, 2, 6.0)  # 0.38 kV limit 5 %
    assert (row.plt_n, row.plt_over) == (3, 1)


def test_dips_and_swells_are_classified():
    start = day_start_ms(DAY, TZ)
    events = pd.DataFrame(
        {
            "time": [start + 1000, start + 2000, start + 3000, start + 4000],
            "type": ["dip", "dip", "swell", "dip"],
            "event_id": ["d1", "d2", "s1", "d1"],  # d1 replayed
            "residual_pct": [75.0, 30.0, np.nan, 75.0],
            "magnitude_pct": [np.nan, np.nan, 125.0, np.nan],
            "duration_ms": [150.0, 800.0, 300.0, 150.0],
        }
    )
    row = pq_daily(pd.DataFrame(), events, [DAY], TZ, 10).iloc[0]
    assert (row.dips, row.swells) == (2, 1)
    assert (row.en_B1, row.en_D3, row.en_S1) == (1, 1, 1)  # EN-6
    assert row.semi_f47_outside == 1  # 30 % for 0.8 s is deeper than SEMI F47 requires


def test_en50160_week_counts_match_en1():
    """EN-1: 1008 ten-minute values, 50 at 200 V (-13 %), the rest at 230 V: 958 within."""
    days = [date(2026, 10, 5 + k) for k in range(7)]
    start = day_start_ms(days[0], TZ)
    ua = np.full(7 * 1440, 230.0)
    ua[: 50 * 10] = 200.0
    readings = pd.DataFrame({"time": start + np.arange(ua.size) * MINUTE_MS, "ua": ua, "interval_s": 60.0})
    result = rollup_site(
        SiteSpec("A", 1, 230.0, Limits(7, 10)),
        readings,
        NO_EVENTS,
        days,
        RollupPolicy(TZ),
        start + 30 * 86_400_000,
    )
    a = result.vq[result.vq.phase == "a"]
    assert (a.en_n.sum(), a.en_within.sum()) == (1008, 958)
    assert a.en_within.sum() / a.en_n.sum() * 100 == pytest.approx(95.0397, abs=1e-4)
    # Mean deviation: (50*10*(-13.04..) + rest*0) / monitored minutes.
    assert a.dev_sum_pct.sum() / a.monitored_min.sum() == pytest.approx(500 * (-30 / 230 * 100) / ua.size)


def test_flagged_intervals_are_left_out():
    """EN-4: a dip flags its 10-minute interval, which then counts in neither N nor within."""
    start = day_start_ms(DAY, TZ)
    ua = np.full(1440, 230.0)
    ua[:100] = 200.0
    readings = pd.DataFrame({"time": start + np.arange(1440) * MINUTE_MS, "ua": ua, "interval_s": 60.0})
    events = pd.DataFrame(
        {
            "time": [start + 5 * MINUTE_MS, start + 25 * MINUTE_MS],
            "type": ["dip", "dip"],
            "event_id": ["a", "b"],
            "duration_ms": [200.0, 200.0],
        }
    )
    result = rollup_site(
        SiteSpec("A", 1, 230.0, Limits(7, 10)),
        readings,
        events,
        [DAY],
        RollupPolicy(TZ),
        start + 2 * 86_400_000,
    )
    a = result.vq[result.vq.phase == "a"].iloc[0]
    assert (a.en_n, a.en_within, a.en_flagged) == (142, 134, 2)

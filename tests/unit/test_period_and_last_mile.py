"""Worked examples of the period of a site and of the last-mile rule (docs/definitions.md),
as pure computations: the integration tests show the same numbers through the stored data."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from analysis.fleet_report import last_mile
from analysis.period import FROM_FIRST_DATA, FROM_REGISTRY, commissioning, monitored_period
from analysis.qualification import vqr_pct
from analysis.reliability import rs1_pct
from analysis.rollup import RollupPolicy, SiteSpec, rollup_site
from core.calendar import MINUTE_MS, day_start_ms
from core.limits import Limits

TZ = "Asia/Shanghai"
D0 = date(2026, 11, 1)
DAYS = [D0 + timedelta(days=k) for k in range(10)]
AFTER = day_start_ms(DAYS[-1] + timedelta(days=2), TZ)  # "now": every day of the report has ended
SPEC = SiteSpec("A002", 3, 220.0, Limits(upper_pct=7.0, lower_pct=-10.0))


def _nominal_readings(first: date, last: date) -> pd.DataFrame:
    start, end = day_start_ms(first, TZ), day_start_ms(last + timedelta(days=1), TZ)
    t = np.arange(start, end, MINUTE_MS, dtype=np.int64)
    return pd.DataFrame({"time": t, "ua": 220.0, "ub": 221.0, "uc": 219.0, "interval_s": 60.0})


NO_EVENTS = pd.DataFrame({"time": pd.Series([], dtype="int64"), "type": [], "event_id": []})


def test_the_registry_commissioning_date_wins_over_the_first_data():
    assert commissioning(DAYS[5], DAYS[3]) == (DAYS[5], FROM_REGISTRY)
    assert commissioning(None, DAYS[3]) == (DAYS[3], FROM_FIRST_DATA)
    assert commissioning(None, None) == (None, None)


def test_commissioned_on_day_5_of_a_10_day_report_is_judged_on_5_days():
    """Test readings since day 3, commissioned on day 5: the period is days 5-9 (5 days), whose
    3 x 5 x 1,440 phase-minutes are all monitored, coverage 100 %, RS-1 100 %."""
    period = monitored_period(DAYS[5], FROM_REGISTRY, DAYS[0], DAYS[-1], TZ, AFTER)
    assert period.as_dict() == {
        "from": DAYS[5].isoformat(),
        "to": DAYS[-1].isoformat(),
        "days": 5,
        "commissioned": DAYS[5].isoformat(),
        "commissioned_from": "registry",
    }
    assert period.seconds == 5 * 86_400
    inside = DAYS[5:]
    result = rollup_site(
        SPEC, _nominal_readings(DAYS[3], DAYS[-1]), NO_EVENTS, inside, RollupPolicy(TZ), AFTER
    )
    pooled = result.vq[result.vq.phase == "all"]
    assert int(pooled.monitored_min.sum()) == 3 * 5 * 1440
    assert int(pooled.missing_min.sum()) == 0
    assert int(pooled.calendar_min.sum()) == 5 * 1440  # coverage = monitored / (channels x calendar) = 100 %
    assert rs1_pct(float(result.rel.outage_s.sum()), period.seconds) == 100.0


def test_commissioned_and_silent_since_is_all_missing_and_no_rate_is_given():
    """Commissioned on day 5 and silent since: 5 x 1,440 = 7,200 missing minutes, coverage 0 %,
    and no VQR (no monitored minute): null, never 100 %."""
    period = monitored_period(DAYS[5], FROM_REGISTRY, DAYS[0], DAYS[-1], TZ, AFTER)
    result = rollup_site(
        SPEC,
        pd.DataFrame({"time": pd.Series([], dtype="int64")}),
        NO_EVENTS,
        DAYS[5:],
        RollupPolicy(TZ),
        AFTER,
    )
    pooled = result.vq[result.vq.phase == "all"]
    assert int(pooled.missing_min.sum()) == 7200
    assert int(pooled.monitored_min.sum()) == 0
    assert vqr_pct(0, 0, 0) is None
    assert period.days == 5


def test_no_commissioning_date_and_no_data_is_an_empty_period():
    period = monitored_period(None, None, DAYS[0], DAYS[-1], TZ, AFTER)
    assert period.days == 0 and period.seconds == 0 and period.as_dict()["from"] is None


def test_a_period_that_ends_before_commissioning_is_empty():
    assert (
        monitored_period(DAYS[-1] + timedelta(days=1), FROM_REGISTRY, DAYS[0], DAYS[-1], TZ, AFTER).days == 0
    )


def _row(site: str, vqr: float | None, supply: float | None) -> dict:
    gap = None if vqr is None or supply is None else vqr - supply
    return {
        "site": site,
        "name": site,
        "feeder": "F01",
        "vqr_pct": vqr,
        "supply_vqr_pct": supply,
        "vqr_gap_pct": gap,
    }


def test_last_mile_worked_example_feeder_in_band_account_ten_percent_low():
    """Feeder F01 in band all day (VQR 100 %); its account A001 10 % of the day 10 % low: 144 of
    1,440 minutes under, VQR 90 %: A001 is on the list with a gap of -10 points; A002 on the same
    feeder at 100 % is not."""
    a001 = vqr_pct(0, 144, 1440)
    assert a001 == pytest.approx(90.0)
    listed = last_mile([_row("A001", a001, 100.0), _row("A002", 100.0, 100.0)], 99.0)
    assert [r["site"] for r in listed] == ["A001"]
    assert listed[0]["vqr_gap_pct"] == pytest.approx(-10.0)


@pytest.mark.parametrize(
    ("account", "feeder", "listed"),
    [
        (98.9, 99.0, True),  # the feeder exactly at the target counts as meeting it
        (99.0, 99.0, False),  # the account at the target is not below it
        (90.0, 98.9, False),  # the feeder itself misses the target: not a last-mile problem
        (None, 100.0, False),  # no data for the account: never listed
        (90.0, None, False),  # no data for the feeder: never listed
    ],
)
def test_last_mile_boundaries(account, feeder, listed):
    assert bool(last_mile([_row("A001", account, feeder)], 99.0)) is listed

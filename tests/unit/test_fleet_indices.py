"""Fleet reliability against docs/definitions.md (REL-1), §3.3 (MED-1), §3.4 (IEEE-1) and §1.4 (VQR-4)."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from analysis.comprehensive import (
    class_vqr_mean_pct,
    class_vqr_pooled_pct,
    comprehensive_vqr_legacy_pct,
    comprehensive_vqr_pct,
)
from analysis.fleet import (
    celid_single,
    celid_total,
    cemi_n,
    cemsmi_n,
    daily_saidi_min,
    dlt836_indices,
    fleet_indices,
    fleet_indices_med_split,
    interruptions_from_outages,
    major_event_days,
    med_threshold,
)
from analysis.outages import Outage
from core.calendar import MINUTE_MS, day_start_ms

TZ = "Asia/Shanghai"
YEAR_H = 8760.0
T0 = day_start_ms(date(2025, 1, 1), TZ)


def _rows(customers, start_ms, duration_s, event=None):
    return [
        {"customer": c, "start_ms": start_ms, "duration_s": duration_s, **({"event": event} if event else {})}
        for c in customers
    ]


def ieee1(with_event_ids: bool = False) -> pd.DataFrame:
    """IEEE-1: A (200) S1 90 min, S3 30 min, M1 of 2 operations; B (50) S2 240 min; C (100) M1."""
    a = [f"A{i}" for i in range(200)]
    b = [f"B{i}" for i in range(50)]
    c = [f"C{i}" for i in range(100)]
    m1 = T0 + 50 * 86_400_000
    ev = "M1" if with_event_ids else None
    rows = (
        _rows(a, T0 + 3_600_000, 90 * 60)
        + _rows(a, T0 + 100 * 86_400_000, 30 * 60)
        + _rows(b, T0 + 20 * 86_400_000, 240 * 60)
        + _rows(a + c, m1, 5.0, ev)
        + _rows(a + c, m1 + 30_000, 8.0, ev)  # the second reclose operation, 30 s later
    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def ieee1_indices():
    return fleet_indices(ieee1(), 1000, YEAR_H)


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("saifi", 0.45),
        ("saidi_min", 36.0),
        ("caidi_min", 80.0),
        ("caifi", 1.8),
        ("ctaidi_min", 144.0),
        ("asai", 0.99993151),
        ("maifi", 0.6),
        ("maifie", 0.3),
    ],
)
def test_ieee1_indices(ieee1_indices, name, expect):
    assert getattr(ieee1_indices, name) == pytest.approx(expect, abs=5e-9)


def test_ieee1_counts(ieee1_indices):
    assert ieee1_indices.customers_interrupted == 250
    assert ieee1_indices.customer_interruptions == 450
    assert ieee1_indices.momentary_operations == 600
    assert ieee1_indices.momentary_events == 300


def test_ieee1_explicit_event_ids_give_the_same_maifie():
    assert fleet_indices(ieee1(with_event_ids=True), 1000, YEAR_H).maifie == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("func", "arg", "kwargs", "expect"),
    [
        (cemi_n, 1, {}, 0.2),
        (cemi_n, 0, {}, 0.25),
        (cemsmi_n, 1, {}, 0.2),
        (cemsmi_n, 0, {}, 0.35),
        (celid_single, 180 * 60, {}, 0.05),
        (celid_single, 240 * 60, {}, 0.05),  # exactly 240 min, "≥"
        (celid_single, 240 * 60, {"inclusive": False}, 0.0),
        (celid_total, 120 * 60, {}, 0.25),
        (celid_total, 120 * 60, {"inclusive": False}, 0.05),
    ],
    ids=[
        "CEMI1",
        "CEMI0",
        "CEMSMI1",
        "CEMSMI0",
        "CELIDs180",
        "CELIDs240ge",
        "CELIDs240gt",
        "CELIDt120ge",
        "CELIDt120gt",
    ],
)
def test_ieee1_customer_indices(func, arg, kwargs, expect):
    assert func(ieee1(), 1000, arg, **kwargs) == pytest.approx(expect)


def test_cemsmi_strict_at_three():
    assert cemsmi_n(ieee1(), 1000, 3) == 0.0
    assert cemsmi_n(ieee1(), 1000, 2) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("duration_s", "sustained"),
    [(4 * 60, False), (5 * 60, False), (5 * 60 + 1, True)],
    ids=["4min-momentary", "5min-momentary", "5min+1s-sustained"],
)
def test_momentary_threshold(duration_s, sustained):
    idx = fleet_indices(pd.DataFrame(_rows(["k"], T0, duration_s)), 10, YEAR_H)
    assert (idx.saifi, idx.maifi) == ((0.1, 0.0) if sustained else (0.0, 0.1))


def test_momentary_threshold_configurable():
    """DL/T 836 profile: 3 min is the line (3 min + 1 s is sustained)."""
    df = pd.DataFrame(_rows(["k"], T0, 181))
    assert fleet_indices(df, 1, YEAR_H, momentary_max_s=180).saifi == 1.0


def test_momentary_events_group_within_five_minutes_of_first():
    """Operations at 0, 4 and 6 min: the third is past 5 min from the first, so a new event."""
    df = pd.DataFrame(
        _rows(["k"], T0, 2.0) + _rows(["k"], T0 + 4 * MINUTE_MS, 2.0) + _rows(["k"], T0 + 6 * MINUTE_MS, 2.0)
    )
    idx = fleet_indices(df, 1, YEAR_H)
    assert (idx.maifi, idx.maifie) == (3.0, 2.0)


def test_replayed_rows_count_once(ieee1_indices):
    df = ieee1()
    replayed = pd.concat([df, df.sample(frac=0.3, random_state=1)]).sample(frac=1.0, random_state=2)
    assert fleet_indices(replayed, 1000, YEAR_H) == ieee1_indices


def test_no_interruptions():
    idx = fleet_indices(pd.DataFrame(columns=["customer", "start_ms", "duration_s"]), 5, YEAR_H)
    assert (idx.saifi, idx.saidi_min, idx.asai) == (0.0, 0.0, 1.0)
    assert idx.caidi_min is None and idx.caifi is None and idx.ctaidi_min is None


def test_interruptions_from_outages():
    df = interruptions_from_outages(
        {"k1": [Outage(T0, T0 + 600_000, "event")], "k2": [Outage(T0, None, "event")]}, T0 + 60_000
    )
    assert df.to_dict("records") == [
        {"customer": "k1", "start_ms": T0, "duration_s": 600.0},
        {"customer": "k2", "start_ms": T0, "duration_s": 60.0},
    ]


MED1_HISTORY = [0.8, 1.2, 0, 2.5, 0.4, 1.0, 3.0, 0.6, 15.0, 1.8, 0.9, 0, 2.2, 0.7, 1.5]


@pytest.mark.parametrize(
    ("ddof", "beta", "t_med", "meds"),
    [(1, 0.923024, 14.2886, [14.5, 40.0]), (0, 0.886813, 13.0519, [14.0, 14.5, 40.0])],
    ids=["MED-1-sample", "MED-1-population"],
)
def test_med1(ddof, beta, t_med, meds):
    th = med_threshold(MED1_HISTORY, ddof=ddof)
    assert th is not None
    assert th.days_used == 13
    assert th.alpha == pytest.approx(0.351899, abs=1e-6)
    assert th.beta == pytest.approx(beta, abs=1e-6)
    assert th.t_med_min == pytest.approx(t_med, abs=1e-4)
    next_year = pd.Series([14.0, 14.5, 40.0], index=[date(2026, 1, d) for d in (1, 2, 3)])
    assert [next_year[d] for d in major_event_days(next_year, th.t_med_min)] == meds


def test_med_default_is_sample_sd():
    assert med_threshold(MED1_HISTORY) == med_threshold(MED1_HISTORY, ddof=1)


def test_day_exactly_at_t_med_is_not_a_med():
    th = med_threshold(MED1_HISTORY)
    assert th is not None
    days = pd.Series(
        [th.t_med_min, np.nextafter(th.t_med_min, np.inf)], index=[date(2026, 1, 1), date(2026, 1, 2)]
    )
    assert major_event_days(days, th.t_med_min) == [date(2026, 1, 2)]


def test_med_threshold_needs_history():
    assert med_threshold([0.0, 3.0]) is None
    assert med_threshold([0.0, 3.0], ddof=0) is not None


def test_daily_saidi_accrues_to_start_day_and_lists_quiet_days():
    start = day_start_ms(date(2025, 3, 1), TZ) + 23 * 3_600_000  # 23:00, lasts 3 h into 2 March
    df = pd.DataFrame(_rows(["k1", "k2"], start, 3 * 3600) + _rows(["k1"], start + 86_400_000, 60.0))
    days = [date(2025, 3, d) for d in (1, 2, 3)]
    saidi = daily_saidi_min(df, 4, TZ, days)
    assert saidi.to_dict() == {days[0]: 90.0, days[1]: 0.0, days[2]: 0.0}  # the 1-min one is momentary


def test_indices_with_and_without_meds():
    """10 customers; 1 March one customer out 60 min; 2 March all out 600 min (an MED)."""
    d1 = day_start_ms(date(2025, 3, 1), TZ) + 3_600_000
    df = pd.DataFrame(_rows(["c0"], d1, 3600) + _rows([f"c{i}" for i in range(10)], d1 + 86_400_000, 36_000))
    split = fleet_indices_med_split(df, 10, YEAR_H, [date(2025, 3, 2)], TZ)
    assert split.med_days == (date(2025, 3, 2),)
    assert split.all_days.saidi_min == pytest.approx(606.0)
    assert split.all_days.saifi == pytest.approx(1.1)
    assert split.excluding_meds.saidi_min == pytest.approx(6.0)
    assert split.excluding_meds.saifi == pytest.approx(0.1)


def rel1(short_cause: str = "fault") -> pd.DataFrame:
    """REL-1: N = 200, PH = 8760 h."""
    return pd.DataFrame(
        {
            "cause": ["fault", "planned", "external", "supply_shortage", short_cause],
            "users": [20, 50, 10, 30, 100],
            "duration_s": [2.0 * 3600, 4.0 * 3600, 1.5 * 3600, 3.0 * 3600, 120.0],
        }
    )


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("aihc1_h", 1.725),
        ("rs1_pct", 99.980308),
        ("rs2_pct", 99.981164),
        ("rs3_pct", 99.985445),
        ("aitc1", 0.55),
        ("aihc_planned_h", 1.0),
        ("aihc_prearranged_h", 1.45),
        ("aihc_fault_h", 0.275),
        ("aihc2_h", 1.65),
        ("aihc3_h", 1.275),
    ],
)
def test_rel1_without_short(name, expect):
    assert getattr(dlt836_indices(rel1(), 200, YEAR_H), name) == pytest.approx(expect, abs=1e-6)


@pytest.mark.parametrize(("name", "expect"), [("aihc1_h", 1.741667), ("rs1_pct", 99.980118), ("aitc1", 1.05)])
def test_rel1_with_short(name, expect):
    got = dlt836_indices(rel1(), 200, YEAR_H, include_short=True)
    assert getattr(got, name) == pytest.approx(expect, abs=1e-6)


def test_rel1_exactly_three_minutes_is_short():
    events = rel1()
    events.loc[4, "duration_s"] = 180.0
    assert dlt836_indices(events, 200, YEAR_H).aitc1 == pytest.approx(0.55)
    events.loc[4, "duration_s"] = 181.0
    assert dlt836_indices(events, 200, YEAR_H).aitc1 == pytest.approx(1.05)


def test_rel1_unknown_cause_is_rejected():
    with pytest.raises(ValueError, match="unknown DL/T 836 cause"):
        dlt836_indices(rel1("weather"), 200, YEAR_H)


def test_rel1_replayed_event_ids_count_once():
    events = rel1().assign(event_id=["e1", "e2", "e3", "e4", "e5"])
    replayed = pd.concat([events, events.iloc[[1]]])
    assert dlt836_indices(replayed, 200, YEAR_H) == dlt836_indices(events, 200, YEAR_H)


def test_vqr4_comprehensive():
    assert comprehensive_vqr_pct(99.95, 99.80, 99.60, 98.90) == pytest.approx(99.6917, abs=5e-5)
    assert comprehensive_vqr_legacy_pct(99.95, 99.80, 99.60) == pytest.approx(99.85, abs=1e-9)


def test_class_mean_and_pooled_differ():
    """Point 1: 10 out of 1000 monitored minutes (99 %); point 2: 0 of 100 (100 %)."""
    assert class_vqr_mean_pct([99.0, 100.0, None]) == pytest.approx(99.5)
    assert class_vqr_pooled_pct([6, 0], [4, 0], [1000, 100]) == pytest.approx((1 - 10 / 1100) * 100)
    assert class_vqr_mean_pct([None]) is None
    assert class_vqr_pooled_pct([0], [0], [0]) is None

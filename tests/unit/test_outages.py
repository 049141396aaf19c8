"""Outage pairing and per-account reliability (docs/definitions.md)."""

import pandas as pd
import pytest

from analysis.outages import Outage, classify, from_events, merge, overlap_s
from analysis.reliability import rs1_pct, rs_system_pct


def events(*rows):
    return pd.DataFrame(rows, columns=["time", "type", "event_id"])


def test_pairs_regardless_of_arrival_order_and_collapses_duplicates():
    ev = events(
        (5000, "power_on", "b"),
        (1000, "power_off", "a"),
        (1000, "power_off", "a"),  # replayed
        (1000, "power_off", "a2"),  # same instant and type under another id
        (9000, "power_off", "c"),
        (12000, "power_on", "d"),
    )
    assert from_events(ev) == [Outage(1000, 5000, "event"), Outage(9000, 12000, "event")]
    assert from_events(ev.sample(frac=1, random_state=3)) == from_events(ev)


def test_unpaired_power_off_is_open():
    found = from_events(events((1000, "power_off", "a")))
    assert found == [Outage(1000, None, "event")]
    assert found[0].duration_s(now_ms=61_000) == 60.0


def test_orphan_power_on_is_ignored():
    assert from_events(events((1000, "power_on", "a"))) == []


def test_merge_union_and_planned_classification():
    merged = merge([Outage(0, 100, "reading"), Outage(50, 200, "event"), Outage(300, 400, "event")])
    assert merged == [Outage(0, 200, "event"), Outage(300, 400, "event")]
    classified = classify(merged, [(250, 500)])
    assert [o.cause for o in classified] == ["unplanned", "planned"]


def test_short_boundary_dlt836():
    """REL-2 edge: exactly 3 min is short, 3 min + 1 s is sustained."""
    assert Outage(0, 180_000, "event").is_short(180, 0)
    assert not Outage(0, 181_000, "event").is_short(180, 0)


def test_outage_split_across_midnight():
    o = Outage(86_400_000 - 600_000, 86_400_000 + 1_200_000, "event")
    assert overlap_s(o, 0, 86_400_000, 10**12) == 600
    assert overlap_s(o, 86_400_000, 2 * 86_400_000, 10**12) == 1200


def test_rel2_single_customer_year():
    year_s = 8760 * 3600
    assert rs1_pct((35 + 240) * 60, year_s) == pytest.approx(99.947679, abs=1e-6)
    assert rs1_pct((35 + 240 + 2) * 60, year_s) == pytest.approx(99.947298, abs=1e-6)


def test_rel1_system_rs():
    assert rs_system_pct(345, 200, 8760) == pytest.approx(99.980308, abs=1e-6)
    assert rs_system_pct(345 - 15, 200, 8760) == pytest.approx(99.981164, abs=1e-6)
    assert rs_system_pct(345 - 90, 200, 8760) == pytest.approx(99.985445, abs=1e-6)
    assert rs_system_pct(345 + 100 / 30, 200, 8760) == pytest.approx(99.980118, abs=1e-6)


def test_rs1_e2e_day():
    assert rs1_pct(3600, 86400) == pytest.approx((1 - 60 / 1440) * 100)

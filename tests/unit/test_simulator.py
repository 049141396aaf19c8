"""The simulated fleet: deterministic, per the MQTT contract, and importable into the registry."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest

from core.registry import CSV_COLUMNS, Registry
from simulator.fleet import DAY_MS, Fleet, make_fleet
from simulator.publish import due_messages

SHANGHAI = timezone(timedelta(hours=8))
T0 = int(datetime(2026, 11, 2, 0, 0, tzinfo=SHANGHAI).timestamp() * 1000)  # a Monday
WEEK = 7 * DAY_MS


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return make_fleet(50, seed=7)


@pytest.fixture(scope="module")
def month_outages(fleet: Fleet) -> list:
    return fleet.outages(T0, T0 + 28 * DAY_MS)


def test_same_seed_same_fleet_and_data() -> None:
    a, b = make_fleet(50, seed=3), make_fleet(50, seed=3)
    assert a == b
    assert a.registry_rows() == b.registry_rows()
    for m in a.meters[:8]:
        assert a.readings(m, T0, T0 + WEEK) == b.readings(m.meter_id, T0, T0 + WEEK)
    assert a.outages(T0, T0 + WEEK) == b.outages(T0, T0 + WEEK)
    assert a.events_reported(T0, T0 + WEEK) == b.events_reported(T0, T0 + WEEK)


def test_another_seed_another_fleet() -> None:
    a, b = make_fleet(50, seed=3), make_fleet(50, seed=4)
    m = a.accounts[0].meter_id
    assert a.readings(m, T0, T0 + DAY_MS) != b.readings(m, T0, T0 + DAY_MS)


def test_day_by_day_equals_one_shot(fleet: Fleet) -> None:
    start, end = T0 - 5 * 3_600_000 + 123, T0 + 3 * DAY_MS + 777
    cuts = [start, T0, T0 + DAY_MS // 3, T0 + DAY_MS, T0 + 2 * DAY_MS + 1, end]
    fresh = make_fleet(50, seed=7)  # no cache shared with the one-shot run
    for m in fleet.meters[::5]:
        whole = fleet.readings(m, start, end)
        pieces = [r for a, b in pairwise(cuts) for r in fresh.readings(m, a, b)]
        assert pieces == whole
    assert fleet.outages(start, end) == sorted(
        {o for a, b in pairwise(cuts) for o in fresh.outages(a, b)},
        key=lambda o: (fleet.meters.index(fleet.meter(o.meter_id)), o.start_ms),
    )


def test_messages_due_piecewise_equal_messages_due_at_once(fleet: Fleet) -> None:
    start, end = T0, T0 + 2 * DAY_MS
    steps = [*range(start, end, 3_600_000 + 17), end]
    whole = due_messages(fleet, start, end, 900)
    pieces = [m for a, b in pairwise(steps) for m in due_messages(fleet, a, b, 900)]
    assert _unpacked(pieces) == _unpacked(whole)
    assert any(m.events for m in whole) and any(m.readings for m in whole)


def _unpacked(messages: list) -> list[str]:
    """Every reading and event as canonical JSON with its topic, in a fixed order."""
    items = []
    for m in messages:
        body = json.loads(m.payload)
        for item in body if isinstance(body, list) else [body]:
            items.append(m.topic + " " + json.dumps(item, sort_keys=True))
    return sorted(items)


def test_fleet_shape(fleet: Fleet) -> None:
    assert len(fleet.accounts) >= 50
    classes = Counter(m.vclass.label for m in fleet.accounts)
    assert set(classes) == {"35kV", "10kV", "380V", "220V"}
    assert all(classes[c] >= 5 for c in ("10kV", "380V", "220V"))
    assert len(fleet.feeders) >= 3
    for m in fleet.accounts:
        assert re.fullmatch(r"A\d{3}", m.site_id) and m.meter_id == f"{m.site_id}-M1"
        assert m.manager in ("mgr1", "mgr2", "mgr3")
        if m.vclass.label == "35kV":
            assert m.feeder_id is None
        else:
            assert m.feeder_id in {f.site_id for f in fleet.feeders}
    for f in fleet.feeders:
        assert re.fullmatch(r"F\d{2}", f.site_id) and f.nominal_v == 57.735
    nominal = {m.vclass.label: (m.nominal_v, m.phase_fields) for m in fleet.accounts}
    assert nominal["10kV"] == (57.735, ("ua", "ub", "uc"))
    assert nominal["380V"] == (220.0, ("ua", "ub", "uc"))
    assert nominal["220V"] == (220.0, ("ua",))


def test_a_tiny_fleet_still_has_the_three_classes() -> None:
    tiny = make_fleet(3, seed=1)
    assert sorted(m.vclass.label for m in tiny.accounts) == ["10kV", "220V", "380V"]
    assert len(tiny.feeders) == 1


def test_readings_follow_the_contract(fleet: Fleet) -> None:
    for m in fleet.meters:
        readings = fleet.readings(m, T0, T0 + 2 * DAY_MS, 900)
        assert readings, m.meter_id
        for r in readings:
            assert isinstance(r["ts"], int) and r["ts"] % 900_000 == 0
            assert r["interval_s"] == 900
            assert set(r) == {"ts", "f", "interval_s", *m.phase_fields}
            for name in m.phase_fields:
                assert isinstance(r[name], float)
                assert 0.8 * m.nominal_v < r[name] < 1.2 * m.nominal_v
                assert round(r[name], m.vclass.decimals) == r[name]
            assert 49.7 < r["f"] < 50.3
        json.dumps(readings)


def test_voltage_is_lower_at_the_evening_peak_than_at_night(fleet: Fleet) -> None:
    m = next(a for a in fleet.accounts if a.vclass.label == "10kV")
    readings = fleet.readings(m, T0, T0 + WEEK, 900)

    def mean_at(hour: int) -> float:
        vals = [r["ua"] for r in readings if datetime.fromtimestamp(r["ts"] / 1000, SHANGHAI).hour == hour]
        return sum(vals) / len(vals)

    assert mean_at(20) < mean_at(3) - 0.01 * m.nominal_v


def test_events_pair_up_with_unique_ids(fleet: Fleet, month_outages: list) -> None:
    assert month_outages
    ids = [e["event_id"] for o in month_outages for e in o.events()]
    assert len(ids) == len(set(ids))
    for o in month_outages:
        off, on = o.events()
        assert (off["type"], on["type"]) == ("power_off", "power_on")
        assert off["event_id"].startswith(o.meter_id + "-")
        assert isinstance(off["ts"], int) and off["ts"] < on["ts"]
        assert on["duration_ms"] == on["ts"] - off["ts"]
        assert 60_000 <= on["ts"] - off["ts"] <= 8 * 3_600_000
        assert o.report_ms > o.end_ms  # meters report after power is back


def test_outages_are_rare_and_mixed(fleet: Fleet, month_outages: list) -> None:
    per_account = Counter(o.site_id for o in month_outages if o.site_id.startswith("A"))
    assert max(per_account.values()) <= 12
    assert sum(per_account.values()) / len(fleet.accounts) < 8  # a month: ~1-2 a week at most
    assert any(o.planned for o in month_outages)
    unplanned = [o for o in month_outages if not o.planned]
    assert any(o.duration_s <= 180 for o in unplanned)
    assert any(o.duration_s > 180 for o in unplanned)
    assert all(60 <= o.duration_s <= 3 * 3600 for o in unplanned)


def test_planned_outages_lie_inside_announced_windows(fleet: Fleet, month_outages: list) -> None:
    windows = fleet.planned_windows(T0, T0 + 28 * DAY_MS)
    for o in (o for o in month_outages if o.planned):
        assert any(
            w.site_id == o.site_id and w.start_ms <= o.start_ms and o.end_ms <= w.end_ms for w in windows
        )


def test_a_feeder_outage_is_an_outage_of_its_accounts(fleet: Fleet, month_outages: list) -> None:
    on_feeders = [o for o in month_outages if o.site_id.startswith("F")]
    assert on_feeders
    for fo in on_feeders:
        for a in (a for a in fleet.accounts if a.feeder_id == fo.site_id):
            assert any(
                o.site_id == a.site_id and (o.start_ms, o.end_ms) == (fo.start_ms, fo.end_ms)
                for o in month_outages
            )


def test_no_readings_during_outages_or_silences(fleet: Fleet, month_outages: list) -> None:
    by_meter: dict[str, list[tuple[int, int]]] = {}
    for o in month_outages:
        by_meter.setdefault(o.meter_id, []).append((o.start_ms, o.end_ms))
    silent = 0
    for m in fleet.meters:
        for day in range(fleet.local_day(T0), fleet.local_day(T0) + 28):
            for gap in fleet.silences(m, day):
                by_meter.setdefault(m.meter_id, []).append(gap)
                silent += 1
    assert silent, "some meter should go silent in four weeks"
    for meter_id, gaps in by_meter.items():
        for r in fleet.readings(meter_id, T0, T0 + 28 * DAY_MS):
            for s, e in gaps:
                assert not (r["ts"] < e and r["ts"] + 900_000 > s), (meter_id, r["ts"])


def test_no_events_reported_while_silent(fleet: Fleet) -> None:
    for m, event in fleet.events_reported(T0, T0 + 28 * DAY_MS):
        outage = next(
            o
            for o in fleet.outages(T0 - DAY_MS, T0 + 28 * DAY_MS, m.meter_id)
            if event["event_id"] in (o.off_event_id, o.on_event_id)
        )
        day = fleet.local_day(outage.report_ms)
        assert not any(s <= outage.report_ms < e for s, e in fleet.silences(m, day))


def test_excursions_cross_the_limits(fleet: Fleet) -> None:
    over = Counter()
    under = Counter()
    for m in fleet.accounts:
        lower, upper = m.limits_v
        for r in fleet.readings(m, T0, T0 + 14 * DAY_MS):
            values = [r[k] for k in m.phase_fields]
            over[m.vclass.label] += any(v > upper for v in values)
            under[m.vclass.label] += any(v < lower for v in values)
    for label in ("10kV", "380V", "220V"):
        assert over[label] > 0 and under[label] > 0, label


def test_registry_rows_import_into_a_real_registry(fleet: Fleet, tmp_path) -> None:
    rows = fleet.registry_rows()
    assert all(tuple(r) == CSV_COLUMNS for r in rows)
    registry = Registry("sqlite:///" + str(tmp_path / "registry.db"))
    try:
        first = registry.upsert_rows(enumerate(rows, start=2))
        assert first.sites_added == len(fleet.meters) and first.meters_added == len(fleet.meters)
        again = registry.import_csv(fleet.write_registry_csv(tmp_path / "fleet.csv"))
        assert again.sites_added == 0 and again.sites_updated == len(fleet.meters)
        index = registry.meter_index()
        assert {(m.site_id, m.meter_id) for m in fleet.meters} == set(index)
        hv = next(s for s in registry.sites("account") if s.voltage_class_kv == 35)
        assert (hv.upper_pct, hv.lower_pct, hv.feeder_id) == (5.0, 5.0, None)
        assert len(registry.sites("feeder")) == len(fleet.feeders)
        w = fleet.planned_windows(T0, T0 + 28 * DAY_MS)[0]
        start = datetime.fromtimestamp(w.start_ms / 1000, UTC).replace(tzinfo=None)
        end = datetime.fromtimestamp(w.end_ms / 1000, UTC).replace(tzinfo=None)
        registry.add_planned_outage(w.site_id, start, end, w.note)
        assert registry.planned_outages(w.site_id) == [(start, end)]
    finally:
        registry.close()


def test_bad_interval_is_refused(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        fleet.readings(fleet.meters[0], T0, T0 + DAY_MS, 7)

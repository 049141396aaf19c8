"""The MQTT contract (DESIGN §4): every rejection has a precise reason."""

import json

import pytest

from collector.contract import MeterInfo, Rejected, decode, parse_topic, parse_ts

METERS = {("A001", "M1"): MeterInfo(220.0, "customer"), ("F1", "M1"): MeterInfo(57.735, "supply")}
NOW = 1_800_000_000_000
OLDEST = NOW - 400 * 86_400_000


def run(topic: str, payload: object):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode(topic, raw, METERS, NOW, OLDEST)


def reason(topic: str, payload: object) -> str:
    with pytest.raises(Rejected) as info:
        run(topic, payload)
    return info.value.reason


def test_single_reading_becomes_a_point():
    out = run("pq/v1/A001/M1/reading", {"ts": NOW, "ua": 229.8, "f": 50.01})
    assert out.lines == [f"reading,meter=M1,side=customer,site=A001 ua=229.8,f=50.01,interval_s=60.0 {NOW}"]


def test_rfc3339_with_offset():
    assert parse_ts("2026-11-22T08:15:00+08:00") == parse_ts("2026-11-22T00:15:00Z")
    with pytest.raises(Rejected, match="offset"):
        parse_ts("2026-11-22T08:15:00")


def test_batch_keeps_good_readings_beside_a_bad_one():
    out = run(
        "pq/v1/A001/M1/reading",
        [{"ts": NOW, "ua": 230}, {"ts": NOW + 60_000, "ua": None}, {"ts": NOW, "ua": 1e9}],
    )
    assert len(out.lines) == 1
    assert [why.reason for why, _ in out.rejected] == ["no_voltage", "voltage_range"]


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("pq/v1/A001/M1/reading", b"{not json", "bad_json"),
        ("pq/v1/A001/M9/reading", {"ts": NOW, "ua": 230}, "unknown_meter"),
        ("pq/v1/A001/M1/other", {"ts": NOW, "ua": 230}, "bad_topic"),
        ("pq/v1/A 1/M1/reading", {"ts": NOW, "ua": 230}, "bad_topic"),
        ("pq/v1/A001/M1/reading", 42, "not_object"),
        ("pq/v1/A001/M1/reading", [], "empty_batch"),
        ("pq/v1/A001/M1/event", {"ts": NOW, "event_id": "e", "type": "boom"}, "bad_event_type"),
        ("pq/v1/A001/M1/event", {"ts": NOW, "type": "power_off"}, "bad_event_id"),
        ("pq/v1/A001/M1/status", b"sleepy", "bad_status"),
        ("pq/v1/A001/M1/reading", b"x" * (256 * 1024 + 1), "too_large"),
        ("pq/v1/A001/M1/reading", b"[" + b",".join([b'{"ts":1,"ua":1}'] * 10_001) + b"]", "batch_too_large"),
    ],
)
def test_rejections(topic, payload, expected):
    assert reason(topic, payload) == expected


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"ua": 230}, "missing_ts"),
        ({"ts": NOW + 11 * 60_000, "ua": 230}, "ts_future"),
        ({"ts": OLDEST - 1, "ua": 230}, "ts_too_old"),
        ({"ts": "yesterday", "ua": 230}, "bad_ts"),
        ({"ts": NOW, "ua": True}, "bad_value"),
        ({"ts": NOW, "ua": 441}, "voltage_range"),
        ({"ts": NOW, "ua": -1}, "voltage_range"),
    ],
)
def test_reading_rejections(item, expected):
    out = run("pq/v1/A001/M1/reading", item)
    assert [why.reason for why, _ in out.rejected] == [expected]
    assert out.lines == []


def test_nan_costs_only_its_own_reading():
    out = run(
        "pq/v1/A001/M1/reading", b'[{"ts": 1800000000000, "ua": NaN}, {"ts": 1800000000000, "ub": 230}]'
    )
    assert [why.reason for why, _ in out.rejected] == ["bad_value"] and len(out.lines) == 1


def test_unknown_fields_are_counted_not_stored():
    out = run("pq/v1/A001/M1/reading", {"ts": NOW, "ua": 230, "vendor_temp": 41})
    assert out.unknown_fields == 1 and "vendor_temp" not in out.lines[0]


def test_event_line_is_keyed_by_time_and_type():
    out = run("pq/v1/A001/M1/event", {"event_id": "M1-000871", "ts": NOW, "type": "power_off"})
    assert out.lines == [f'event,meter=M1,site=A001,type=power_off event_id="M1-000871" {NOW}']


def test_topic_parts():
    assert parse_topic("pq/v1/A001/M1/status") == ("A001", "M1", "status")

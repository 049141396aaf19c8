"""The MQTT contract (docs/mqtt.md): every rejection has a precise reason."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.contract import (
    FAST_BATCH_MIN,
    MeterInfo,
    Rejected,
    _ceilings,
    _fast_batch,
    _reading,
    _reading_prefix,
    decode,
    parse_topic,
    parse_ts,
)

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


def test_a_dip_carries_its_phase_and_numbers_to_the_alert_engine():
    body = {
        "event_id": "d1",
        "ts": NOW,
        "type": "dip",
        "phase": "b",
        "residual_pct": 41,
        "duration_ms": 250.5,
    }
    out = run("pq/v1/A001/M1/event", body)
    assert out.event == ("dip", "d1")
    assert out.event_values == {"phase": "b", "residual_pct": 41.0, "duration_ms": 250.5}


def test_topic_parts():
    assert parse_topic("pq/v1/A001/M1/status") == ("A001", "M1", "status")


_numbers = st.one_of(
    st.floats(min_value=0, max_value=500, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=500),
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(
        st.sampled_from(["ua", "ub", "uc", "uab", "f", "interval_s", "p", "thd_ua"]),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    data=st.data(),
)
def test_fast_batch_path_writes_what_the_reading_path_writes(fields, data):
    """Gateway batches take a column-wise fast path; it must agree with reading-by-reading."""
    n = data.draw(st.integers(min_value=FAST_BATCH_MIN, max_value=30))
    items = []
    for i in range(n):
        item = {"ts": NOW - i * 60_000}
        for name in fields:
            item[name] = data.draw(_numbers)
        items.append(item)
    info = METERS[("A001", "M1")]
    prefix, ceilings = _reading_prefix("A001", "M1", info.side), _ceilings(info)
    fast = _fast_batch(items, prefix, ceilings, NOW, OLDEST)
    slow = []
    for item in items:
        try:
            slow.append(_reading(item, prefix, ceilings, NOW, OLDEST)[0])
        except Rejected:
            assert fast is None  # any bad reading sends the batch down the precise path
            return
    if fast is not None:
        assert fast[0] == slow


def test_a_plain_gateway_batch_takes_the_fast_path():
    items = [{"ts": NOW - i * 60_000, "ua": 230.5, "ub": 229, "f": 50.0} for i in range(20)]
    info = METERS[("A001", "M1")]
    prefix, ceilings = _reading_prefix("A001", "M1", info.side), _ceilings(info)
    fast = _fast_batch(items, prefix, ceilings, NOW, OLDEST)
    assert fast is not None
    assert fast[0] == [_reading(item, prefix, ceilings, NOW, OLDEST)[0] for item in items]
    assert (
        fast[0][0]
        == f"reading,meter=M1,side=customer,site=A001 ua=230.5,ub=229.0,f=50.0,interval_s=60.0 {NOW}"
    )
    items[3]["ua"] = True  # one odd value: the whole batch goes reading by reading
    assert _fast_batch(items, prefix, ceilings, NOW, OLDEST) is None

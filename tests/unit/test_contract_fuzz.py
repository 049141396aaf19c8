"""The collector's decode path under malformed input (docs/mqtt.md: a bad message never stops
the collector and never costs a good one).

Messages, good and bad mixed, go through the real ``Collector.decode_one`` (a Collector
built on real settings, a SQLite registry and a tmp data dir; building one opens no
connection) and their rejects through the real ``DeadLetters.add_many``. Properties:

- nothing raises, in decoding or in storing the dead letters;
- every bad message, and every bad reading of a batch, gives one dead-letter tuple whose
  reason is the one the contract names for that defect;
- every good reading gives exactly one point whose fields and time equal the input;
- points + rejects = items.

Hypothesis chooses the shape of each message (its kind, and per batch item good or which
defect); a seeded ``random.Random`` fills in the values, which keeps 10,000 examples fast.
:class:`MessageFuzzer` is shared with the end-to-end stream test. The inputs that break the
properties today are pinned below as strict xfails.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.contract import (
    EVENT_TYPES,
    LINE_FIELDS,
    MAX_BATCH,
    MAX_FUTURE_MS,
    MAX_PAYLOAD_BYTES,
    READING_FIELDS,
    VOLTAGE_FIELDS,
)
from collector.deadletter import DeadLetters
from collector.service import Collector
from core.registry import CSV_COLUMNS, Registry
from core.settings import load_settings

KNOWN_REASONS = frozenset(
    {
        "bad_topic",
        "too_large",
        "unknown_meter",
        "bad_status",
        "bad_json",
        "not_object",
        "batch_too_large",
        "empty_batch",
        "missing_ts",
        "bad_ts",
        "ts_future",
        "ts_too_old",
        "bad_value",
        "no_voltage",
        "voltage_range",
        "bad_event_id",
        "bad_event_type",
    }
)
ITEM_DEFECTS = (
    "not_object",
    "nested_array",
    "missing_ts",
    "bad_ts",
    "naive_ts",
    "ts_future",
    "ts_too_old",
    "bad_value",
    "non_finite",
    "bad_interval",
    "no_voltage",
    "voltage_range",
)
DEFECT_REASON = {
    "nested_array": "not_object",
    "naive_ts": "bad_ts",
    "non_finite": "bad_value",
    "bad_interval": "bad_value",
}
MESSAGE_DEFECTS = (
    "random_bytes",
    "invalid_utf8",
    "truncated",
    "wrong_type",
    "empty_batch",
    "oversize",
    "batch_too_large",
    "bad_topic",
    "unknown_meter",
    "bad_status",
    "bad_event",
)
NEUTRAL = ("good_status", "good_event")  # neither a reading point nor a reject
NUMERIC = tuple(f for f in READING_FIELDS if f not in VOLTAGE_FIELDS and f != "interval_s")
BAD_TOPICS = (
    "pq/v1/A001/M1/other",
    "pq/v2/A001/M1/reading",
    "pq/v1/A001/M1/readings",
    "pq/v1//M1/reading",
    "pq/v1/A001//reading",
    "pq/v1/A 1/M1/reading",
    "pq/v1/A001/M1,x/reading",
    "pq/v1/Ä/M1/reading",
    "pq/v1/A001/M=1/event",
    "pq/v1/A001/M1/",
    "pq/v1/" + "A" * 65 + "/M1/reading",
)
TEXT_CHARS = 'abcXYZ019 _-.,="\\\n\t\x00é中€😀{}[]:'
LONE_SURROGATES = "\ud800\udfff"  # legal in JSON (as \\u escapes), not in UTF-8

Meters = Mapping[tuple[str, str], tuple[float, str]]  # (site, meter) -> (nominal V, side)


@dataclass
class Message:
    """A message and what it must give: per item None (good) or the reason; ``opaque``: only
    the invariants hold (random bytes, whose items nobody can name beforehand)."""

    topic: str
    payload: bytes
    items: list[str | None] = field(default_factory=list)
    points: list[tuple[dict[str, float], int]] = field(default_factory=list)  # good readings
    opaque: bool = False

    @property
    def rejects(self) -> int:
        return sum(1 for r in self.items if r is not None)

    @property
    def nonportable(self) -> bool:
        """JSON that parsers disagree on: NaN or Infinity, an integer beyond 64 bits, a lone
        surrogate. The contract may take it item by item or reject the whole message as bad_json."""
        return nonportable(self.payload)


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def _int64(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**64:
        raise ValueError(text)
    return value


def _has_lone_surrogate(obj: Any) -> bool:
    if isinstance(obj, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in obj)
    if isinstance(obj, list):
        return any(_has_lone_surrogate(v) for v in obj)
    if isinstance(obj, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in obj.items())
    return False


def nonportable(payload: bytes) -> bool:
    try:
        loose = json.loads(payload)
    except (ValueError, RecursionError):
        return False  # no JSON to anyone
    try:
        json.loads(payload, parse_constant=_no_constants, parse_int=_int64)
    except ValueError:
        return True
    return _has_lone_surrogate(loose)


def ceiling(name: str, nominal: float) -> float:
    return 2 * nominal * (math.sqrt(3) if name in LINE_FIELDS else 1.0)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # NaN and Infinity as Python writes them; \\u escapes


class MessageFuzzer:
    """Messages of the MQTT contract, good and broken, from a seeded random source."""

    def __init__(
        self, rng: random.Random, meters: Meters, now_ms: int, retention_days: int, margin_ms: int = 0
    ) -> None:
        """``margin_ms`` keeps every time that long clear of the limits: for a collector whose
        clock reads later than ``now_ms`` when it takes the message."""
        self.rng = rng
        self.meters = meters
        self.now_ms = now_ms
        self.oldest_ms = now_ms - retention_days * 86_400_000
        self.margin_ms = margin_ms
        self.topics = [f"pq/v1/{s}/{m}/reading" for s, m in meters]

    # -- values -----------------------------------------------------------------------------
    def text(self, low: int = 0, high: int = 12, surrogates: bool = True) -> str:
        chars = TEXT_CHARS + LONE_SURROGATES if surrogates else TEXT_CHARS
        return "".join(self.rng.choice(chars) for _ in range(self.rng.randint(low, high)))

    def scalar(self) -> Any:
        r = self.rng
        return r.choice(
            [
                None,
                True,
                False,
                0,
                -1,
                r.randint(-(10**18), 10**18),
                0.0,
                -0.0,
                1e308,
                5e-324,
                r.uniform(-1e6, 1e6),
                self.text(),
                "",
                "NaN",
                "1e999",
            ]
        )

    def value(self, depth: int = 0) -> Any:
        if depth < 2 and self.rng.random() < 0.25:
            if self.rng.random() < 0.5:
                return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
            return {self.text(0, 4): self.value(depth + 1) for _ in range(self.rng.randint(0, 3))}
        return self.scalar()

    def not_number(self) -> Any:
        return self.rng.choice([True, False, self.text(), "230", [], [230.0], {}, {"v": 1}])

    def ts(self, low: int, high: int) -> tuple[Any, int]:
        """(ts as sent, epoch ms): integer ms, integral float, or RFC 3339 with an offset."""
        r = self.rng
        ms = r.choice([low, high, r.randint(low, high)])
        form = r.choice(["int", "float", "rfc", "rfc_z"])
        if form == "float":
            return float(ms), ms
        if form in ("rfc", "rfc_z"):
            tz = UTC if form == "rfc_z" else timezone(timedelta(minutes=r.randint(-12 * 60, 14 * 60)))
            text = (datetime.fromtimestamp(ms // 1000, tz) + timedelta(milliseconds=ms % 1000)).isoformat()
            return (text.replace("+00:00", "Z") if form == "rfc_z" else text), ms
        return ms, ms

    def voltage(self, name: str, nominal: float) -> float | int:
        top = ceiling(name, nominal)
        r = self.rng
        return r.choice([0, 0.0, top, nominal, int(top), r.uniform(0, top), r.uniform(0.9, 1.1) * nominal])

    # -- readings ---------------------------------------------------------------------------
    def good_reading(self, nominal: float) -> tuple[dict[str, Any], dict[str, float], int]:
        """A valid reading, the fields its point must carry, and its time."""
        r = self.rng
        ts, ts_ms = self.ts(self.oldest_ms + 1 + self.margin_ms, self.now_ms + MAX_FUTURE_MS)
        obj: dict[str, Any] = {"ts": ts}
        expect: dict[str, float] = {}
        for name in r.sample(VOLTAGE_FIELDS, r.randint(1, len(VOLTAGE_FIELDS))):
            obj[name] = self.voltage(name, nominal)
            expect[name] = float(obj[name])
        for name in r.sample(NUMERIC, r.randint(0, 4)):
            value = r.choice(
                [None, 0, -0.0, 1e308, -1e308, 5e-324, r.uniform(-1e4, 1e4), r.randint(-(10**15), 10**15)]
            )
            obj[name] = value
            if value is not None:
                expect[name] = float(value)
        interval = r.choice([None, None, 60, 900, 86_400, 5e-324, r.uniform(0.001, 86_400)])
        if interval is not None:
            obj["interval_s"] = interval
        expect["interval_s"] = 60.0 if interval is None else float(interval)
        for _ in range(r.choice([0, 0, 1, 2])):
            key = self.text(1, 6)
            if key != "ts" and key not in READING_FIELDS:
                obj[key] = self.value()  # unknown fields are counted and ignored
        return obj, expect, ts_ms

    def bad_reading(self, nominal: float, defect: str) -> tuple[Any, str]:
        """A good reading with one defect, and the reason the contract gives for it."""
        r = self.rng
        obj, _expect, _ts = self.good_reading(nominal)
        voltages = [n for n in VOLTAGE_FIELDS if n in obj]
        if defect == "not_object":
            return r.choice([None, True, 0, 1.5, "", self.text(), "{}"]), "not_object"
        if defect == "nested_array":
            return [obj] if r.random() < 0.5 else [], "not_object"
        if defect == "missing_ts":
            del obj["ts"]
        elif defect == "bad_ts":
            obj["ts"] = r.choice(
                [
                    True,
                    False,
                    None,
                    [],
                    [self.now_ms],
                    {},
                    r.uniform(0, 1e12) + 0.5,
                    1.5,
                    "x" + self.text(),
                    "",
                    "now",
                    "1800000000000",
                    "2026-13-01T00:00:00Z",
                ]
            )
        elif defect == "naive_ts":
            obj["ts"] = datetime.fromtimestamp(r.randint(self.oldest_ms, self.now_ms) / 1000).isoformat()
        elif defect == "ts_future":
            low = self.now_ms + MAX_FUTURE_MS + 1 + self.margin_ms
            obj["ts"] = r.choice([self.ts(low, 253_402_000_000_000)[0], r.randint(low, 10**30), low])
        elif defect == "ts_too_old":
            high = self.oldest_ms - 1
            obj["ts"] = r.choice([self.ts(-62_000_000_000_000, high)[0], r.randint(-(10**30), high), high, 0])
        elif defect == "bad_value":
            obj[r.choice(READING_FIELDS)] = r.choice([self.not_number(), 10**400, -(10**309)])
        elif defect == "non_finite":
            obj[r.choice(READING_FIELDS)] = r.choice([math.nan, math.inf, -math.inf])
        elif defect == "bad_interval":
            obj["interval_s"] = r.choice([0, 0.0, -0.0, -1, -1e308, 86_400.001, 1e308, 10**18, 10**400])
        elif defect == "no_voltage":
            for name in voltages:
                if r.random() < 0.5:
                    obj[name] = None
                else:
                    del obj[name]
        elif defect == "voltage_range":
            name = r.choice(voltages)
            top = ceiling(name, nominal)
            obj[name] = r.choice(
                [-1, -1e-9, -1e308, math.nextafter(top, math.inf), top * 1.5, 1e308, int(top) + 1, 10**18]
            )
        else:
            raise ValueError(defect)
        return obj, DEFECT_REASON.get(defect, defect)

    def readings(self, topic: str, plan: list[str | None], as_array: bool) -> Message:
        """A reading or a gateway batch: ``plan`` holds None (good) or a defect per item."""
        site, meter = topic.split("/")[2:4]
        nominal = self.meters[(site, meter)][0]
        msg = Message(topic, b"")
        items = []
        for defect in plan:
            if defect is None:
                obj, fields, ts_ms = self.good_reading(nominal)
                msg.points.append((fields, ts_ms))
                msg.items.append(None)
            else:
                obj, reason = self.bad_reading(nominal, defect)
                msg.items.append(reason)
            items.append(obj)
        # A bare array is a batch, so a lone array-shaped item goes inside one.
        as_array = as_array or len(items) > 1 or isinstance(items[0], list)
        msg.payload = dumps(items if as_array else items[0])
        return msg

    # -- whole messages ---------------------------------------------------------------------
    def broken(self, kind: str) -> Message:
        """A message that breaks the contract as a whole, or a neutral status or event."""
        r = self.rng
        topic = r.choice(self.topics)
        good = self.readings(topic, [None] * r.randint(1, 3), r.random() < 0.5).payload
        if kind == "random_bytes":
            return Message(topic, r.randbytes(r.randint(0, 64)), opaque=True)
        if kind == "invalid_utf8":
            at = r.randint(1, len(good))
            junk = r.choice([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80"])
            return Message(topic, good[:at] + junk + good[at:], ["bad_json"])
        if kind == "truncated":  # a strict prefix of a JSON object or array is never JSON
            return Message(topic, good[: r.randint(0, len(good) - 1)], ["bad_json"])
        if kind == "wrong_type":
            return Message(
                topic,
                dumps(r.choice([None, True, 0, -1.5, 1e308, "", self.text(), "online"])),
                ["not_object"],
            )
        if kind == "empty_batch":
            return Message(topic, r.choice([b"[]", b" [ ] ", b"[\n]"]), ["empty_batch"])
        if kind == "oversize":
            pad = MAX_PAYLOAD_BYTES + 1 - len(good) + r.randint(0, 1000)
            return Message(topic, good + b" " * max(pad, 0), ["too_large"])
        if kind == "batch_too_large":
            return Message(topic, b"[" + b"{}," * MAX_BATCH + b"{}]", ["batch_too_large"])
        if kind == "bad_topic":
            bad = r.choice([*BAD_TOPICS, "x/" + self.text(surrogates=False)])
            return Message(bad, good, ["bad_topic"])
        if kind == "unknown_meter":
            site, meter = r.choice([("A001", "M9"), ("A002", "M1"), ("F1", "M2"), ("a001", "M1")])
            return Message(
                f"pq/v1/{site}/{meter}/{r.choice(['reading', 'event', 'status'])}", good, ["unknown_meter"]
            )
        status_topic = topic.replace("/reading", "/status")
        if kind == "good_status":
            return Message(status_topic, r.choice([b"online", b"offline", b'"online"', b" offline\n"]))
        if kind == "bad_status":
            return Message(
                status_topic, r.choice([b"", b"on", b"ONLINE", b"\xff", b"null", good[:12]]), ["bad_status"]
            )
        event: dict[str, Any] = {
            "event_id": self.text(1, 20, surrogates=False).replace("\n", " "),
            "ts": self.ts(self.oldest_ms + 1 + self.margin_ms, self.now_ms)[0],
            "type": r.choice(EVENT_TYPES),
        }
        event_topic = topic.replace("/reading", "/event")
        if kind == "good_event":
            return Message(event_topic, dumps(event), [None])
        defect = r.choice(["event_id", "type", "ts", "body"])
        if defect == "event_id":
            event["event_id"] = r.choice(["", "e" * 129, None, 12, [], {}, "e\ud800", 10**400])
            return Message(event_topic, dumps(event), ["bad_event_id"])
        if defect == "type":
            event["type"] = r.choice([None, "", "POWER_OFF", "outage", 1, ["dip"], self.text()])
            return Message(event_topic, dumps(event), ["bad_event_type"])
        if defect == "ts":
            del event["ts"]
            return Message(event_topic, dumps(event), ["missing_ts"])
        return Message(event_topic, dumps(r.choice([None, 1, "dip", [event]])), ["not_object"])


# -- the collector under test ---------------------------------------------------------------
METERS: dict[tuple[str, str], tuple[float, str]] = {
    ("A001", "M1"): (220.0, "customer"),
    ("A001", "M2"): (220.0, "customer"),
    ("F1", "M1"): (57.735, "supply"),
}
RETENTION_DAYS = 400
NOW = int(time.time() * 1000)
RECEIVED = NOW - 5
FUZZ = settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def registry_rows(meters: Meters) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for n, ((site, meter), (nominal, side)) in enumerate(meters.items(), start=2):
        kind = "feeder" if side == "supply" else "account"
        values = [site, kind, site, "10", "3", meter, str(nominal), "", "", "gb", "", ""]
        rows.append((n, dict(zip(CSV_COLUMNS, values, strict=True))))
    return rows


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    root = tmp_path_factory.mktemp("fuzz")
    env = {
        "PQMON_DATA_DIR": str(root / "var"),
        "PQMON_REGISTRY_URL": f"sqlite:///{root / 'registry.db'}",
        "PQMON_MQTT_URL": "mqtt://127.0.0.1:9",  # nothing listens: building must not connect
        "PQMON_INFLUX_URL": "http://127.0.0.1:9",
        "PQMON_METRICS_PORT": "0",
        "PQMON_RETENTION_DAYS": str(RETENTION_DAYS),
    }
    registry = Registry(env["PQMON_REGISTRY_URL"])
    registry.upsert_rows(registry_rows(METERS))
    registry.close()
    built = Collector(load_settings(env))
    yield built
    # Collector.stop() joins threads that were never started; close the parts instead.
    built.spool.close()
    built.deadletters.close()
    built.registry.close()
    built.store.close()


@pytest.fixture(scope="module")
def letters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeadLetters]:
    store = DeadLetters(tmp_path_factory.mktemp("dead") / "deadletter.db")
    store._db.execute("PRAGMA synchronous=OFF")  # speed only: nothing here survives the test
    yield store
    store.close()


def fuzzer(seed: int) -> MessageFuzzer:
    return MessageFuzzer(random.Random(seed), METERS, NOW, RETENTION_DAYS)


def reading_message(seed: int, topic: str, plan: list[str | None], as_array: bool) -> Message:
    return fuzzer(seed).readings(topic, plan, as_array)


def broken_message(seed: int, kind: str) -> Message:
    return fuzzer(seed).broken(kind)


# Strategies built once: hypothesis picks the shape, the seed fills in the values.
SEEDS = st.integers(0, 2**32 - 1)
PLANS = st.lists(st.sampled_from((None, *ITEM_DEFECTS)), min_size=1, max_size=6)
messages = st.one_of(
    st.builds(
        reading_message,
        SEEDS,
        st.sampled_from([f"pq/v1/{s}/{m}/reading" for s, m in METERS]),
        PLANS,
        st.booleans(),
    ),
    st.builds(broken_message, SEEDS, st.sampled_from(MESSAGE_DEFECTS + NEUTRAL)),
)


# -- checking the outcome --------------------------------------------------------------------
def parse_point(point: str) -> tuple[str, dict[str, str], dict[str, float], int]:
    head, fields_text, ts_text = point.split(" ")
    measurement, *tag_pairs = head.split(",")
    tags = dict(pair.split("=", 1) for pair in tag_pairs)
    fields = {k: float(v) for k, v in (pair.split("=", 1) for pair in fields_text.split(","))}
    return measurement, tags, fields, int(ts_text)


def check(collector: Collector, letters: DeadLetters, msg: Message) -> None:
    dead: list[tuple[object, ...]] = []
    lines = collector.decode_one(msg.topic, msg.payload, RECEIVED, NOW, dead)
    letters.add_many(dead)  # the writer's next step: it must not raise either
    for point in lines:
        point.encode("utf-8")  # InfluxStore.write encodes the batch
    for topic, _payload, reason, _detail, received, *_key in dead:
        assert reason in KNOWN_REASONS
        assert (topic, received) == (msg.topic, RECEIVED)
    if msg.opaque:
        assert len(lines) + len(dead) >= 1
        return
    if msg.nonportable and not lines and [d[2] for d in dead] == ["bad_json"]:
        return  # a strict parser took the whole message as bad JSON
    assert [d[2] for d in dead] == [r for r in msg.items if r is not None]
    assert len(lines) + len(dead) == len(msg.items)
    if msg.points:  # each good reading is exactly its point
        site, meter = msg.topic.split("/")[2:4]
        assert len(lines) == len(msg.points)
        for point, (fields, ts_ms) in zip(lines, msg.points, strict=True):
            measurement, tags, got, got_ts = parse_point(point)
            assert measurement == "reading"
            assert tags == {"site": site, "meter": meter, "side": METERS[(site, meter)][1]}
            assert got == fields
            assert got_ts == ts_ms


@FUZZ
@given(msg=messages)
def test_decode_never_raises_and_accounts_for_every_item(
    collector: Collector, letters: DeadLetters, msg: Message
) -> None:
    check(collector, letters, msg)


def test_building_a_collector_opens_no_connection(collector: Collector) -> None:
    assert collector._client._sock is None
    assert not collector._writer.is_alive() and not collector._spooler.is_alive()


# -- found by fuzzing: inputs that stopped the collector's writer thread ----------------------------
# (an OverflowError or UnicodeEncodeError escaped decode_one or DeadLetters.add_many, the writer
# thread died with the message at the head of the spool, and /healthz still said ok.) Each is
# either rejected item by item or, by a strict JSON parser, as a whole: (reasons, points).
REGRESSIONS = [
    pytest.param(
        "pq/v1/A001/M1/reading",
        b'{"ts": %d, "ua": 1%s}' % (NOW, b"0" * 400),
        [(["bad_value"], 0), (["bad_json"], 0)],
        id="huge-integer-voltage",
    ),
    pytest.param(
        "pq/v1/A001/M1/reading",
        b'{"ts": %d, "ua": 230, "p": -1%s}' % (NOW, b"0" * 309),
        [(["bad_value"], 0), (["bad_json"], 0)],
        id="huge-integer-power",
    ),
    pytest.param(
        "pq/v1/A001/M1/event",
        b'{"ts": %d, "event_id": "e1", "type": "dip", "duration_ms": 1%s}' % (NOW, b"0" * 400),
        [(["bad_value"], 0), (["bad_json"], 0)],
        id="huge-integer-event-number",
    ),
    pytest.param(
        "pq/v1/A001/M1/reading",
        b'{"ts": "\\ud800", "ua": 230}',
        [(["bad_ts"], 0), (["bad_json"], 0)],
        id="escaped-lone-surrogate-in-rejected-reading",
    ),
    pytest.param(
        "pq/v1/A001/M1/reading",
        b'[{"ts": %d, "ua": 230}, {"ts": 1, "x": "\xed\xa0\x80"}]' % NOW,
        [(["ts_too_old"], 1), (["bad_json"], 0)],
        id="utf8-encoded-surrogate-in-rejected-batch-item",
    ),
    pytest.param(
        "pq/v1/A001/M1/event",
        b'{"ts": %d, "event_id": "\\udc80", "type": "dip"}' % NOW,
        [(["bad_event_id"], 0), (["bad_json"], 0)],
        id="lone-surrogate-event-id",
    ),
]


@pytest.mark.parametrize(("topic", "payload", "outcomes"), REGRESSIONS)
def test_inputs_that_once_stopped_the_writer(
    collector: Collector,
    letters: DeadLetters,
    topic: str,
    payload: bytes,
    outcomes: list[tuple[list[str], int]],
) -> None:
    dead: list[tuple[object, ...]] = []
    lines = collector.decode_one(topic, payload, RECEIVED, NOW, dead)
    letters.add_many(dead)
    for point in lines:
        point.encode("utf-8")
    assert ([d[2] for d in dead], len(lines)) in outcomes

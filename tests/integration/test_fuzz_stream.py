"""A stream of malformed messages, good ones interleaved, through the real collector process
(docs/mqtt.md: a bad message never stops the collector and never costs a good one).

Real Mosquitto and InfluxDB. Over 10,000 bad payloads, from a seed: the contract fuzzer's
categories (tests/unit/test_contract_fuzz.py) and a byte mutator over good payloads, each
kept only if the pure contract rejects it the same way at the publishing time and a few
minutes later. Over 2,000 good readings, alone, in batches, and beside bad items in the same
batch. Afterwards: the collector is still running and healthy, the dead-letter store holds
exactly one record per rejected payload or batch item, with its reason, and InfluxDB holds
exactly the good readings (count and sum).

Dead letters are unique by (topic, payload, reason, received ms), so every rejected payload
and item here is distinct: two identical ones arriving in the same millisecond would share
one record.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.contract import MeterInfo, Rejected, decode
from collector.deadletter import DeadLetters
from core.servers import wait_until
from tests.conftest import run_pqmon
from tests.integration.mqtt_support import CollectorProcess, Stream, count_and_sum, registry_csv
from tests.unit.test_contract_fuzz import (
    ITEM_DEFECTS,
    MESSAGE_DEFECTS,
    NEUTRAL,
    MessageFuzzer,
    nonportable,
)

pytestmark = pytest.mark.integration

SEED = 20261122
METERS = 5
NOMINAL = 220.0
RETENTION_DAYS = 400  # the collector's default
MARGIN_MS = 5 * 60_000  # the stream is taken well within this
BAD_PAYLOADS = 10_500
GOOD_SINGLE = 1_400
GOOD_BATCHES = 200  # 2 to 5 good readings each
MIXED_BATCHES = 300  # 1 or 2 good readings beside 1 to 3 bad ones
CAPS = {"oversize": 20, "batch_too_large": 5, "good_status": 50, "good_event": 0}  # big or neutral
CST = timezone(timedelta(hours=8))
MUTANT_TOKENS = [
    b"null",
    b"NaN",
    b"-",
    b"1e999",
    b'"',
    b",",
    b"}",
    b"]",
    b"[",
    b"{",
    b"\xff",
    b"\\u0000",
    b"\\ud800",
    b"0" * 400,
    b"true",
    b'"x"',
    b" ",
    b"\x00",
    b":",
]

Dead = tuple[str, bytes]  # (topic, stored payload): what makes a dead letter distinct here


class Plan:
    """The messages to publish and, from the pure contract, what each must leave behind."""

    def __init__(self, seed: int, now_ms: int) -> None:
        self.rng = random.Random(seed)
        self.now_ms = now_ms
        self.meters = {("A001", f"M{m}"): (NOMINAL, "customer") for m in range(METERS)}
        self.table = {key: MeterInfo(nominal, side) for key, (nominal, side) in self.meters.items()}
        self.fuzzer = MessageFuzzer(self.rng, self.meters, now_ms, RETENTION_DAYS, MARGIN_MS)
        self.messages: list[tuple[str, bytes]] = []
        self.reasons: Counter[str] = Counter()
        self.bad_payloads = 0
        self.kinds: Counter[str] = Counter()
        self.good: list[float] = []  # ua of every good reading
        self._seen: set[Dead] = set()
        self._next_minute = {m: 0 for m in range(METERS)}
        self.start_ms = (now_ms // 60_000 - 30 * 1440) * 60_000

    # -- the oracle -------------------------------------------------------------------------
    def outcome(self, topic: str, payload: bytes) -> tuple[int, list[tuple[str, Dead]]]:
        """(points, [(reason, dead-letter identity)]) now and MARGIN_MS later, or raise if they differ."""
        seen = []
        for now in (self.now_ms, self.now_ms + MARGIN_MS):
            oldest = now - RETENTION_DAYS * 86_400_000
            try:
                out = decode(topic, payload, self.table, now, oldest)
            except Rejected as why:
                seen.append((0, [(why.reason, (topic, payload))]))
                continue
            dead = [(why.reason, (topic, json.dumps(item).encode())) for why, item in out.rejected]
            seen.append((len(out.lines), dead))
        if seen[0] != seen[1]:
            raise ValueError("outcome depends on the clock")
        return seen[0]

    def add_bad(self, kind: str, topic: str, payload: bytes, *, want: list[str] | None = None) -> bool:
        """Keep a message that gives no point and only dead letters never seen before."""
        try:
            points, dead = self.outcome(topic, payload)
        except ValueError:
            return False
        if points or not dead or any(key in self._seen for _, key in dead):
            return False
        if len({key for _, key in dead}) != len(dead):
            return False
        if want is not None:  # the fuzzer's own expectation must be the contract's
            assert [reason for reason, _ in dead] == want, (kind, topic, payload[:200])
        self._seen.update(key for _, key in dead)
        self.reasons.update(reason for reason, _ in dead)
        self.messages.append((topic, payload))
        self.bad_payloads += 1
        self.kinds[kind] += 1
        return True

    # -- good readings ----------------------------------------------------------------------
    def good_reading(self, meter: int) -> dict[str, Any]:
        """A reading at a (meter, minute) used once, so no point overwrites another."""
        k = self._next_minute[meter]
        self._next_minute[meter] += 1
        ms = self.start_ms + k * 60_000
        ua = round(200.0 + self.rng.random() * 40, 3)
        self.good.append(ua)
        ts: Any = ms if self.rng.random() < 0.5 else datetime.fromtimestamp(ms / 1000, CST).isoformat()
        reading = {"ts": ts, "ua": ua, "ub": round(self.rng.uniform(210, 230), 2), "f": 50.0}
        if self.rng.random() < 0.3:
            reading["interval_s"] = 900
        return reading

    def add_good(self, items: list[Any], topic: str, as_array: bool) -> None:
        payload = json.dumps(items if as_array or len(items) != 1 else items[0]).encode()
        points, dead = self.outcome(topic, payload)
        assert points == sum(1 for i in items if isinstance(i, dict) and "ua" in i and "_bad" not in i)
        assert all(key not in self._seen for _, key in dead) and len({k for _, k in dead}) == len(dead)
        self._seen.update(key for _, key in dead)
        self.reasons.update(reason for reason, _ in dead)
        if dead:
            self.bad_payloads += len(dead)
        self.messages.append((topic, payload))

    # -- mutants ----------------------------------------------------------------------------
    def mutant(self) -> bytes:
        r = self.rng
        base = {
            "ts": r.randint(self.start_ms, self.now_ms - 86_400_000),
            "ua": round(r.uniform(200, 240), 2),
            "ub": 230.1,
            "uc": 229.9,
            "f": 49.98,
            "interval_s": 60,
        }
        if r.random() < 0.3:
            base["ts"] = datetime.fromtimestamp(base["ts"] / 1000, CST).isoformat()
        data = bytearray(json.dumps(base if r.random() < 0.7 else [base]).encode())
        for _ in range(r.randint(1, 3)):
            op = r.choice(["flip", "delete", "insert", "duplicate", "digit"])
            at = r.randrange(len(data) + 1) if data else 0
            if op == "flip" and data:
                data[min(at, len(data) - 1)] = r.randrange(256)
            elif op == "delete" and data:
                del data[at : at + r.randint(1, 8)]
            elif op == "insert":
                data[at:at] = r.choice(MUTANT_TOKENS)
            elif op == "duplicate" and data:
                span = data[at : at + r.randint(1, 16)]
                data[at:at] = span
            else:
                digits = [i for i, b in enumerate(data) if 48 <= b <= 57]
                if digits:
                    data[r.choice(digits)] = r.randrange(48, 58)
        return bytes(data)

    # -- the whole stream -------------------------------------------------------------------
    def build(self) -> None:
        r = self.rng
        topics = [f"pq/v1/A001/M{m}/reading" for m in range(METERS)]
        makers: list[Callable[[], bool]] = [self._broken, self._bad_batch, self._mutated]
        tries = 0
        while self.bad_payloads < BAD_PAYLOADS:
            tries += 1
            assert tries < 20 * BAD_PAYLOADS, f"the generator is stuck at {self.bad_payloads}: {self.kinds}"
            r.choice(makers)()
        bad_messages = self.messages
        self.messages = []
        for _ in range(GOOD_SINGLE):
            m = r.randrange(METERS)
            self.add_good([self.good_reading(m)], topics[m], r.random() < 0.2)
        for _ in range(GOOD_BATCHES):
            m = r.randrange(METERS)
            self.add_good([self.good_reading(m) for _ in range(r.randint(2, 5))], topics[m], True)
        for _ in range(MIXED_BATCHES):
            while not self._mixed(topics):
                pass
        good_messages = self.messages
        # Interleave: the good ones spread evenly through the bad.
        merged = bad_messages + good_messages
        order = list(range(len(merged)))
        r.shuffle(order)
        self.messages = [merged[i] for i in order]

    def _broken(self) -> bool:
        kind = self.rng.choice(MESSAGE_DEFECTS + NEUTRAL)
        if self.kinds[kind] >= CAPS.get(kind, BAD_PAYLOADS):
            return False
        msg = self.fuzzer.broken(kind)
        if not deliverable(msg.topic):
            return False
        if kind in NEUTRAL:
            if kind == "good_status":
                self.kinds[kind] += 1
                self.messages.append((msg.topic, msg.payload))
            return False
        want = None if msg.opaque or msg.nonportable else [r for r in msg.items if r is not None]
        return self.add_bad(kind, msg.topic, msg.payload, want=want)

    def _bad_batch(self) -> bool:
        topic = self.rng.choice(self.fuzzer.topics)
        plan: list[str | None] = [self.rng.choice(ITEM_DEFECTS) for _ in range(self.rng.randint(1, 4))]
        msg = self.fuzzer.readings(topic, plan, self.rng.random() < 0.5)
        want = None if msg.nonportable else [r for r in msg.items if r is not None]
        return self.add_bad("items:" + ",".join(sorted(set(map(str, plan)))), topic, msg.payload, want=want)

    def _mutated(self) -> bool:
        return self.add_bad("mutant", self.rng.choice(self.fuzzer.topics), self.mutant())

    def _mixed(self, topics: list[str]) -> bool:
        m = self.rng.randrange(METERS)
        defects: list[str | None] = [self.rng.choice(ITEM_DEFECTS) for _ in range(self.rng.randint(1, 3))]
        bad = self.fuzzer.readings(topics[m], defects, True)
        items: list[Any] = json.loads(bad.payload)
        for item in items:  # mark them, so that they are not taken for good ones
            if isinstance(item, dict):
                item["_bad"] = 1
        probe = json.dumps(items).encode()
        if nonportable(probe):  # a strict parser would reject the good readings beside it too
            return False
        try:
            points, dead = self.outcome(topics[m], probe)
        except ValueError:
            return False
        if points or any(key in self._seen for _, key in dead) or len({k for _, k in dead}) != len(dead):
            return False
        goods = [self.good_reading(m) for _ in range(self.rng.randint(1, 2))]
        for good in goods:
            items.insert(self.rng.randrange(len(items) + 1), good)
        self.add_good(items, topics[m], True)
        self.kinds["mixed"] += 1
        return True


def deliverable(topic: str) -> bool:
    """Reaches a subscriber of pq/v1/+/+/+ (a topic outside it is the broker's business)."""
    levels = topic.split("/")
    return (
        len(levels) == 5
        and levels[:2] == ["pq", "v1"]
        and "\x00" not in topic
        and not any(c in topic for c in "+#")
        and len(topic.encode()) < 65_000
    )


def readings_in_influx(env: dict[str, str]) -> tuple[int, float]:
    return count_and_sum(env["PQMON_INFLUX_URL"], env["PQMON_INFLUX_DB"])


def dead_letter_reasons(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    letters = DeadLetters(path)
    try:
        return Counter(rec["reason"] for rec in letters.records())
    finally:
        letters.close()


def test_collector_survives_a_fuzzed_stream(tmp_path: Path, pqmon_env: dict[str, str]) -> None:
    began = time.monotonic()
    plan = Plan(SEED, int(time.time() * 1000))
    plan.build()
    assert plan.bad_payloads >= 10_000 and len(plan.good) >= 2_000
    generated = time.monotonic() - began

    done = run_pqmon(pqmon_env, "registry", "import", str(registry_csv(tmp_path / "reg.csv", METERS)))
    assert done.returncode == 0, done.stderr
    collector = CollectorProcess(pqmon_env, tmp_path / "collector.log").start()
    dead_path = Path(pqmon_env["PQMON_DATA_DIR"]) / "deadletter.db"
    expected_dead = sum(plan.reasons.values())
    try:
        Stream(pqmon_env["PQMON_MQTT_URL"], plan.messages, client_id="fuzz-stream").start().join(120)
        with contextlib.suppress(TimeoutError):  # the comparisons below tell what is missing
            wait_until(
                lambda: (
                    readings_in_influx(pqmon_env)[0] >= len(plan.good)
                    and sum(dead_letter_reasons(dead_path).values()) >= expected_dead
                ),
                60,
                "every good reading stored and every bad one dead-lettered",
                interval_s=0.5,
            )
        wait_until(lambda: collector.metrics()["pqmon_collector_spool_depth"] == 0, 30, "an empty spool")
        time.sleep(1.0)  # nothing more may come

        assert collector.proc is not None and collector.proc.poll() is None, "the collector exited"
        assert collector.healthy()
        metrics = collector.metrics()
        assert metrics["pqmon_collector_received_total"] == len(plan.messages)

        reasons = dead_letter_reasons(dead_path)
        assert all(reasons), "every dead letter has a reason"
        assert reasons == plan.reasons, (reasons - plan.reasons, plan.reasons - reasons)
        for reason, n in plan.reasons.items():
            assert metrics[f'pqmon_collector_rejected_total{{reason="{reason}"}}'] == n

        count, total = readings_in_influx(pqmon_env)
        assert count == len(plan.good), metrics
        assert total == pytest.approx(sum(plan.good), rel=1e-12)
    finally:
        assert collector.stop() == 0
    took = time.monotonic() - began
    print(
        f"\n{len(plan.messages)} messages ({plan.bad_payloads} bad payloads, {len(plan.good)} good "
        f"readings), generated in {generated:.1f}s, whole test {took:.1f}s; reasons {dict(plan.reasons)}"
    )
    assert took < 90

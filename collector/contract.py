"""The MQTT contract, version 1 (docs/mqtt.md): topics and payloads turned into points.

Pure: bytes in, line-protocol points (or a :class:`Rejected` with a precise reason) out.
In a gateway batch each reading stands alone, so one bad reading never costs the good
ones beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from core.lineproto import line, valid_ident

TOPIC_PREFIX = "pq/v1/"
KINDS = ("reading", "event", "status")
PHASE_FIELDS = ("ua", "ub", "uc")
LINE_FIELDS = ("uab", "ubc", "uca")
VOLTAGE_FIELDS = PHASE_FIELDS + LINE_FIELDS
READING_FIELDS = VOLTAGE_FIELDS + (
    "ia",
    "ib",
    "ic",
    "p",
    "q",
    "pf",
    "f",
    "thd_ua",
    "thd_ub",
    "thd_uc",
    "unb",
    "plt",
    "interval_s",
)
EVENT_TYPES = ("power_off", "power_on", "dip", "swell", "interruption")
EVENT_NUMBERS = ("duration_ms", "residual_pct", "magnitude_pct")
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH = 10_000
MAX_FUTURE_MS = 10 * 60_000
DEFAULT_INTERVAL_S = 60.0
FAST_BATCH_MIN = 8  # below this a batch is not worth the column-wise checks
DEFAULT_INTERVAL_FIELD = f"interval_s={DEFAULT_INTERVAL_S!r}"
READING_FIELD_SET = frozenset(READING_FIELDS)
VOLTAGE_FIELD_SET = frozenset(VOLTAGE_FIELDS)
LINE_FIELD_SET = frozenset(LINE_FIELDS)


class Rejected(Exception):
    """A message (or one reading of a batch) that breaks the contract."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class MeterInfo:
    nominal_v: float
    side: str  # "customer" or "supply"


@dataclass
class Decoded:
    kind: str
    site: str
    meter: str
    lines: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # each line's timestamp, UTC ms
    rejected: list[tuple[Rejected, Any]] = field(default_factory=list)  # (why, offending element)
    unknown_fields: int = 0
    status: str | None = None
    event: tuple[str, str] | None = None  # (type, event_id) of an event message, for the alerts
    event_values: dict[str, Any] = field(default_factory=dict)  # its phase and numbers (dips)


def parse_topic(topic: str) -> tuple[str, str, str]:
    if not topic.startswith(TOPIC_PREFIX):
        raise Rejected("bad_topic", f"topic {topic!r} is not under {TOPIC_PREFIX}")
    parts = topic[len(TOPIC_PREFIX) :].split("/")
    if len(parts) != 3 or parts[2] not in KINDS:
        raise Rejected("bad_topic", f"topic {topic!r} is not pq/v1/<site>/<meter>/(reading|event|status)")
    site, meter, kind = parts
    if not valid_ident(site) or not valid_ident(meter):
        raise Rejected("bad_topic", f"site or meter id in {topic!r} has characters outside A-Z a-z 0-9 _ . -")
    return site, meter, kind


def parse_ts(value: Any) -> int:
    """RFC 3339 with an offset, or integer epoch milliseconds, to UTC epoch ms."""
    if isinstance(value, bool):
        raise Rejected("bad_ts", "ts must be RFC 3339 or epoch milliseconds, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected("bad_ts", f"ts {value[:40]!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise Rejected("bad_ts", f"ts {value[:40]!r} has no UTC offset")
        return int(round(parsed.timestamp() * 1000))
    raise Rejected("bad_ts", f"ts must be RFC 3339 or epoch milliseconds, got {type(value).__name__}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected("bad_value", f"{name} must be a number, got {json.dumps(value)[:40]}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond any float
        raise Rejected("bad_value", f"{name} is too large") from None
    if not math.isfinite(number):
        raise Rejected("bad_value", f"{name} is not finite")
    return number


def _encodable(text: str) -> bool:
    """False for a lone surrogate (legal in JSON escapes, not in UTF-8 or line protocol)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_time(ts_ms: int, now_ms: int, oldest_ms: int) -> None:
    if ts_ms > now_ms + MAX_FUTURE_MS:
        raise Rejected("ts_future", f"ts {ts_ms} is more than 10 minutes ahead of the collector's clock")
    if ts_ms < oldest_ms:
        raise Rejected("ts_too_old", f"ts {ts_ms} is older than the retention horizon")


def reading_line(
    obj: Any, site: str, meter: str, info: MeterInfo, now_ms: int, oldest_ms: int
) -> tuple[str, int]:
    """One reading object to a line; returns (line, number of unknown fields ignored)."""
    text, unknown, _ts = _reading(
        obj, _reading_prefix(site, meter, info.side), _ceilings(info), now_ms, oldest_ms
    )
    return text, unknown


def _reading_prefix(site: str, meter: str, side: str) -> str:
    """Measurement and tags, sorted; site and meter are validated identifiers, so nothing to escape."""
    return f"reading,meter={meter},side={side},site={site} "


def _ceilings(info: MeterInfo) -> tuple[float, float]:
    """The highest acceptable phase and line voltage: 2 x nominal."""
    return 2 * info.nominal_v, 2 * info.nominal_v * math.sqrt(3)


def _reading(
    obj: Any, prefix: str, ceilings: tuple[float, float], now_ms: int, oldest_ms: int
) -> tuple[str, int, int]:
    """The hot path of the collector: one pass over the object's own keys."""
    if type(obj) is not dict:
        raise Rejected("not_object", "each reading must be a JSON object")
    if "ts" not in obj:
        raise Rejected("missing_ts", "reading has no ts")
    ts_ms = parse_ts(obj["ts"])
    _check_time(ts_ms, now_ms, oldest_ms)
    parts: list[str] = []
    unknown = 0
    has_voltage = has_interval = False
    for name, value in obj.items():
        if name not in READING_FIELD_SET:
            if name != "ts":
                unknown += 1
            continue
        if value is None:
            continue
        if type(value) is float and math.isfinite(value):
            number = value
        else:
            number = _number(name, value)
        if name in VOLTAGE_FIELD_SET:
            ceiling = ceilings[1] if name in LINE_FIELD_SET else ceilings[0]
            if not 0 <= number <= ceiling:
                raise Rejected("voltage_range", f"{name}={number} is outside 0 to 2 x nominal")
            has_voltage = True
        elif name == "interval_s":
            if not 0 < number <= 86_400:
                raise Rejected("bad_value", f"interval_s={number} must be in (0, 86400]")
            has_interval = True
        parts.append(f"{name}={number!r}")
    if not has_voltage:
        raise Rejected("no_voltage", "reading has none of ua ub uc uab ubc uca")
    if not has_interval:
        parts.append(DEFAULT_INTERVAL_FIELD)
    return f"{prefix}{','.join(parts)} {ts_ms}", unknown, ts_ms


def _fast_batch(
    items: list[Any], prefix: str, ceilings: tuple[float, float], now_ms: int, oldest_ms: int
) -> tuple[list[str], list[int]] | None:
    """A gateway batch whose readings all have the same known keys and plain numbers, checked
    column-wise with numpy: twice as fast as reading by reading. Anything unusual returns
    None, and the reading-by-reading path then gives each bad reading its precise reason;
    both paths write the same lines (tests/unit/test_contract.py checks it)."""
    first = items[0]
    if type(first) is not dict or "ts" not in first:
        return None
    keys = tuple(first)
    names = [k for k in keys if k != "ts"]
    if not names or not all(k in READING_FIELD_SET for k in names):
        return None
    if not any(k in VOLTAGE_FIELD_SET for k in names):
        return None
    for item in items:
        if type(item) is not dict or tuple(item) != keys:
            return None
    times = [item["ts"] for item in items]
    columns = [[item[k] for item in items] for k in names]
    for column in (times, *columns):
        for value in column:
            kind = type(value)
            if kind is not float and kind is not int:
                return None
    if not all(type(t) is int for t in times):
        return None
    try:
        ts = np.array(times, dtype=np.int64)
        values = np.array(columns, dtype=np.float64)
    except OverflowError:
        return None
    if not np.isfinite(values).all() or (ts > now_ms + MAX_FUTURE_MS).any() or (ts < oldest_ms).any():
        return None
    for row, name in zip(values, names, strict=True):
        if name in VOLTAGE_FIELD_SET:
            ceiling = ceilings[1] if name in LINE_FIELD_SET else ceilings[0]
            if (row < 0).any() or (row > ceiling).any():
                return None
        elif name == "interval_s" and ((row <= 0).any() or (row > 86_400).any()):
            return None
    tail = "" if "interval_s" in names else "," + DEFAULT_INTERVAL_FIELD
    template = prefix + ",".join(f"{k}={{!r}}" for k in names) + tail + " {}"
    floats = [[float(v) for v in column] for column in columns]
    return [template.format(*row) for row in zip(*floats, times, strict=True)], times


def event_line(obj: Any, site: str, meter: str, now_ms: int, oldest_ms: int) -> tuple[str, int]:
    if not isinstance(obj, dict):
        raise Rejected("not_object", "an event must be a JSON object")
    if "ts" not in obj:
        raise Rejected("missing_ts", "event has no ts")
    ts_ms = parse_ts(obj["ts"])
    _check_time(ts_ms, now_ms, oldest_ms)
    event_id = obj.get("event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 128 or not _encodable(event_id):
        raise Rejected("bad_event_id", "event_id must be a non-empty UTF-8 string of at most 128 characters")
    kind = obj.get("type")
    if kind not in EVENT_TYPES:
        raise Rejected("bad_event_type", f"type {str(kind)[:40]!r} is not one of {', '.join(EVENT_TYPES)}")
    fields: dict[str, object] = {"event_id": event_id}
    if obj.get("phase") is not None:
        phase = obj["phase"]
        if phase not in ("a", "b", "c", "ab", "bc", "ca", "abc"):
            raise Rejected("bad_value", f"phase {str(phase)[:10]!r} is not a, b, c, ab, bc, ca or abc")
        fields["phase"] = phase
    for name in EVENT_NUMBERS:
        if obj.get(name) is not None:
            fields[name] = _number(name, obj[name])
    known = {"ts", "event_id", "type", "phase", *EVENT_NUMBERS}
    unknown = sum(1 for k in obj if k not in known)
    return line("event", {"site": site, "meter": meter, "type": kind}, fields, ts_ms), unknown


def _loads(payload: bytes) -> Any:
    """orjson is 4x faster; the standard library takes what orjson is stricter about (NaN,
    integers past 64 bits, lone surrogate escapes), so that such a value costs only its own
    reading, never the good ones beside it in a batch."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


def decode(
    topic: str,
    payload: bytes,
    meters: Mapping[tuple[str, str], MeterInfo],
    now_ms: int,
    oldest_ms: int,
) -> Decoded:
    """Validate one MQTT message. Raises Rejected when the whole message is bad."""
    site, meter, kind = parse_topic(topic)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("too_large", f"payload of {len(payload)} bytes is over 256 KiB")
    info = meters.get((site, meter))
    if info is None:
        raise Rejected("unknown_meter", f"meter {meter!r} of site {site!r} is not in the registry")
    out = Decoded(kind, site, meter)
    if kind == "status":
        text = payload.decode("utf-8", errors="replace").strip().strip('"')
        if text not in ("online", "offline"):
            raise Rejected("bad_status", f"status must be online or offline, got {text[:20]!r}")
        out.status = text
        return out
    try:
        body = _loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected("bad_json", str(exc)[:120]) from None
    if kind == "event":
        text = event_line(body, site, meter, now_ms, oldest_ms)[0]
        out.lines.append(text)
        out.times.append(int(text[text.rindex(" ") + 1 :]))
        out.event = (str(body["type"]), str(body["event_id"]))
        out.event_values = {k: _number(k, body[k]) for k in EVENT_NUMBERS if body.get(k) is not None}
        if body.get("phase") is not None:
            out.event_values["phase"] = str(body["phase"])
        return out
    items = body if isinstance(body, list) else [body]
    if not isinstance(body, (list, dict)):
        raise Rejected("not_object", "a reading payload must be a JSON object or an array of objects")
    if len(items) > MAX_BATCH:
        raise Rejected("batch_too_large", f"{len(items)} readings in one message; at most {MAX_BATCH}")
    if not items:
        raise Rejected("empty_batch", "the array holds no readings")
    prefix, ceilings = _reading_prefix(site, meter, info.side), _ceilings(info)
    fast = _fast_batch(items, prefix, ceilings, now_ms, oldest_ms) if len(items) >= FAST_BATCH_MIN else None
    if fast is not None:
        out.lines, out.times = fast
        return out
    for item in items:
        try:
            text, unknown, ts_ms = _reading(item, prefix, ceilings, now_ms, oldest_ms)
        except Rejected as why:
            out.rejected.append((why, item))
        else:
            out.lines.append(text)
            out.times.append(ts_ms)
            out.unknown_fields += unknown
    return out

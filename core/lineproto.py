"""InfluxDB line protocol and InfluxQL identifier safety.

Identifiers that reach InfluxQL are validated against one pattern and quoted;
nothing typed by a user is pasted into a query (README: InfluxDB).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

IDENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def valid_ident(value: str) -> bool:
    return bool(IDENT_RE.match(value))


def check_ident(value: str, what: str = "identifier") -> str:
    if not isinstance(value, str) or not IDENT_RE.match(value):
        raise ValueError(f"{what} {value!r} is not allowed: use 1-64 of A-Z a-z 0-9 _ . -")
    return value


def quote_ident(value: str) -> str:
    """Double-quoted InfluxQL identifier (measurement, tag or field key)."""
    return '"' + check_ident(value) + '"'


def quote_literal(value: str) -> str:
    """Single-quoted InfluxQL string literal for a validated identifier value."""
    return "'" + check_ident(value) + "'"


def _escape_key(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field_value(value: object) -> str:
    if hasattr(value, "item"):  # a numpy scalar from a DataFrame row
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("line protocol cannot carry NaN or infinity")
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, object],
    ts_ms: int,
) -> str:
    """One point in line protocol at millisecond precision; tags sorted for InfluxDB's benefit."""
    tag_part = "".join(f",{_escape_key(k)}={_escape_key(str(v))}" for k, v in sorted(tags.items()) if v != "")
    field_part = ",".join(f"{_escape_key(k)}={_field_value(v)}" for k, v in fields.items() if v is not None)
    if not field_part:
        raise ValueError(f"point for {measurement} has no fields")
    return f"{_escape_key(measurement)}{tag_part} {field_part} {int(ts_ms)}"

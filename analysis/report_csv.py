"""Reports as CSV tables that spreadsheets, ``pandas.read_csv`` and ``csv.reader`` all read.

A report is nested JSON; CSV is flat. Each table here has exactly one header row and one
kind of row, so no reader has to guess:

- site report: ``figure,value`` (every scalar of the report, by dotted path, e.g.
  ``phases.a.vqr_pct``), ``outages`` (one row per entry of ``outage_list``), ``weeks``
  (one row per EN 50160 week, ``within_pct.<phase>`` columns), ``daily`` (one row per day,
  ``phases.<phase>.max_v`` columns) and ``dips`` (one row per dip or swell);
- fleet report: ``sites`` (one row per key account), ``indices`` (``figure,value`` of
  everything that is not a table: voltage, IEEE 1366, DL/T 836, the period) and
  ``last_mile`` (one row per account on the last-mile list).

Cells: booleans ``true``/``false``, null an empty cell, numbers unrounded, a list of plain
values joined with ``;``. A dict or a list of records never lands in a cell: it has its own
table, and anything else is a bug that fails loudly rather than printing a Python repr.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from analysis.fleet_report import LAST_MILE_COLUMNS, SITE_COLUMNS

OUTAGE_COLUMNS = (
    "start",
    "end",
    "duration_s",
    "cause",
    "length",
    "open",
    "start_source",
    "end_source",
)
WEEK_COLUMNS = ("week_start", "days", "verdict", "valid_10min", "required_10min")
DAILY_COLUMNS = ("day", "vqr_pct", "coverage_pct")
DIP_COLUMNS = ("time", "type", "duration_s", "level_pct", "itic", "semi_f47")
FIGURE_COLUMNS = ("figure", "value")
MAIN = ""  # the key of the main table in the dicts below; the others name a sibling file


def cell(value: Any) -> str | int | float:
    """One value as a CSV cell; raises TypeError for a structure, which needs a table of its own."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a numpy scalar
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else value
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, (list, tuple)) and not any(isinstance(v, (dict, list, tuple)) for v in value):
        return ";".join(str(cell(v)) for v in value)
    raise TypeError(f"{type(value).__name__} cannot be one CSV cell; give it a table of its own")


def _is_table(value: Any) -> bool:
    """A list of records: rendered as a table of its own, not as figures."""
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def figures(report: Mapping[str, Any], skip: Iterable[str] = ()) -> list[tuple[str, str | int | float]]:
    """Every scalar of a nested report as (dotted path, cell), in the report's order.

    Tables (lists of records) and the keys in ``skip`` are left out: they are tables elsewhere.
    """
    skipped = set(skip)
    out: list[tuple[str, str | int | float]] = []

    def walk(prefix: str, value: Any) -> None:
        if prefix in skipped or _is_table(value):
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out.append((prefix, cell(value)))

    walk("", report)
    return out


def table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A CSV table with one header row; nested dicts in a row become ``key.sub`` columns.

    ``columns`` come first, in order, so that an empty table still has its header; columns
    that only some rows have (per-phase shares, say) follow in first-seen order.
    """
    flat = [dict(figures(row)) for row in rows]
    header = list(columns)
    for row in flat:
        header += [k for k in row if k not in header]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([row.get(k, "") for k in header] for row in flat)
    return out.getvalue()


def site_tables(report: Mapping[str, Any]) -> dict[str, str]:
    """The site report: figure,value (main), its outages, EN 50160 weeks, days, dips and swells."""
    weeks = (report.get("en50160") or {}).get("weeks") or []
    return {
        MAIN: table(
            FIGURE_COLUMNS,
            ({"figure": k, "value": v} for k, v in figures(report, skip=("outage_list", "en50160.weeks"))),
        ),
        "outages": table(OUTAGE_COLUMNS, report.get("outage_list") or []),
        "weeks": table(WEEK_COLUMNS, weeks),
        "daily": table(DAILY_COLUMNS, report.get("daily") or []),
        "dips": table(DIP_COLUMNS, report.get("dips") or []),
    }


def fleet_tables(report: Mapping[str, Any]) -> dict[str, str]:
    """The fleet report: one row per account (main), the fleet's indices, the last-mile list."""
    indices = figures(report, skip=("sites", "last_mile"))
    return {
        MAIN: table(SITE_COLUMNS, report.get("sites") or []),
        "indices": table(FIGURE_COLUMNS, ({"figure": k, "value": v} for k, v in indices)),
        "last_mile": table(LAST_MILE_COLUMNS, report.get("last_mile") or []),
    }


def sibling(path: Path, name: str) -> Path:
    """``may.csv`` and ``outages`` -> ``may.outages.csv``; the main table keeps ``path``."""
    if name == MAIN:
        return path
    stem = path.name[: -len(".csv")] if path.name.lower().endswith(".csv") else path.name
    return path.with_name(f"{stem}.{name}.csv")


def write_tables(path: Path, tables: Mapping[str, str]) -> list[Path]:
    """Each table to its file, UTF-8 with a byte-order mark so Excel shows names right
    (pandas skips it; Python's csv module wants ``encoding="utf-8-sig"``)."""
    written = []
    for name, text in tables.items():
        target = sibling(path, name)
        with open(target, "w", encoding="utf-8-sig", newline="") as fh:
            fh.write(text)
        written.append(target)
    return written

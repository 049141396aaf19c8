"""What importing a registry CSV would change, worked out before anything is written.

:func:`parse_csv` reads the file's rows, :func:`preview` compares them with the registry as
it is (sites, meters, users) the way ``Registry.upsert_rows`` would apply them, row by row:
sites and meters added or changed (field, old, new), manager assignments that would be made,
manager names with no manager user behind them, and every bad line. Nothing here touches a
database; the admin page shows the result and applies the same rows only when asked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from core.registry import CSV_COLUMNS, OPTIONAL_CSV_COLUMNS, SITE_FIELDS, Site, User, parse_row

Row = tuple[int, dict[str, str]]


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class SiteChange:
    line: int  # the first line naming the site
    site_id: str
    changes: tuple[FieldChange, ...]  # an added site: every field, old None


@dataclass(frozen=True)
class MeterChange:
    line: int
    site_id: str
    meter_id: str
    old_nominal_v: float | None  # None: added
    nominal_v: float


@dataclass(frozen=True)
class Assignment:
    line: int
    manager: str
    site_id: str


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


@dataclass(frozen=True)
class Preview:
    rows: tuple[Row, ...]
    sites_added: tuple[SiteChange, ...] = ()
    sites_updated: tuple[SiteChange, ...] = ()
    sites_unchanged: tuple[str, ...] = ()
    meters_added: tuple[MeterChange, ...] = ()
    meters_updated: tuple[MeterChange, ...] = ()
    meters_unchanged: int = 0
    assignments: tuple[Assignment, ...] = ()
    unknown_managers: tuple[Assignment, ...] = ()  # a manager name no manager user has
    errors: tuple[LineError, ...] = ()

    @property
    def applicable(self) -> bool:
        """Apply is offered only for a file without errors that has rows."""
        return not self.errors and bool(self.rows)

    @property
    def changes_anything(self) -> bool:
        return bool(
            self.sites_added
            or self.sites_updated
            or self.meters_added
            or self.meters_updated
            or self.assignments
        )


def parse_csv(text: str) -> tuple[tuple[Row, ...], tuple[LineError, ...]]:
    """The file's rows with their line numbers (the header is line 1), and structural errors."""
    text = text.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        return (), (LineError(1, f"missing column(s) {', '.join(missing)}"),)
    rows: list[Row] = []
    errors: list[LineError] = []
    try:
        for raw in reader:
            lineno = reader.line_num
            if None in raw or any(v is None for v in raw.values()):
                errors.append(
                    LineError(lineno, f"the header has {len(header)} fields; this line has another count")
                )
                continue
            if not any(v.strip() for v in raw.values()):
                continue  # a blank line
            rows.append((lineno, {k: v for k, v in raw.items() if k in CSV_COLUMNS + OPTIONAL_CSV_COLUMNS}))
    except csv.Error as exc:
        errors.append(LineError(reader.line_num, f"not readable as CSV: {exc}"))
    if not rows and not errors:
        errors.append(LineError(1, "the file has no rows"))
    return tuple(rows), tuple(errors)


def _facts(site: Any) -> dict[str, Any]:
    return {f: getattr(site, f) for f in SITE_FIELDS}


def preview(rows: Iterable[Row], sites: Iterable[Site], users: Iterable[User]) -> Preview:
    """What ``Registry.upsert_rows(rows)`` would do to a registry holding ``sites`` and ``users``.

    Rows apply in order, so a site on several lines ends with its last line's facts; that is
    what is compared with the registry. The manager column assigns the account to a user of
    that name whose role is manager, once (as the import does); other names assign nothing.
    """
    rows = tuple(rows)
    sites = list(sites)
    before = {s.id: _facts(s) for s in sites}
    meters_before = {(m.site_id, m.meter_id): m.nominal_v for s in sites for m in s.meters}
    user_list = list(users)
    managers = {u.name for u in user_list if u.role == "manager"}
    assigned = {(u.name, sid) for u in user_list for sid in u.sites}

    final: dict[str, tuple[int, dict[str, Any]]] = {}
    meters: dict[tuple[str, str], tuple[int, float]] = {}
    assignments: list[Assignment] = []
    unknown: list[Assignment] = []
    errors: list[LineError] = []
    for lineno, raw in rows:
        try:
            site, meter_id, nominal_v = parse_row(raw)
        except KeyError as exc:
            errors.append(LineError(lineno, f"no value for {exc.args[0]}"))
            continue
        except (ValueError, TypeError, AttributeError) as exc:
            errors.append(LineError(lineno, str(exc)))
            continue
        first = final[site.id][0] if site.id in final else lineno
        final[site.id] = (first, _facts(site))
        key = (site.id, meter_id)
        meters[key] = (meters[key][0] if key in meters else lineno, nominal_v)
        if site.manager:
            if site.manager not in managers:
                unknown.append(Assignment(lineno, site.manager, site.id))
            elif (site.manager, site.id) not in assigned:
                assigned.add((site.manager, site.id))
                assignments.append(Assignment(lineno, site.manager, site.id))

    added, updated, unchanged = [], [], []
    for site_id, (lineno, facts) in final.items():
        if site_id not in before:
            added.append(
                SiteChange(lineno, site_id, tuple(FieldChange(f, None, facts[f]) for f in SITE_FIELDS))
            )
            continue
        changes = tuple(
            FieldChange(f, before[site_id][f], facts[f])
            for f in SITE_FIELDS
            if before[site_id][f] != facts[f]
        )
        if changes:
            updated.append(SiteChange(lineno, site_id, changes))
        else:
            unchanged.append(site_id)
    m_added, m_updated, m_same = [], [], 0
    for (site_id, meter_id), (lineno, nominal_v) in meters.items():
        old = meters_before.get((site_id, meter_id))
        if old is None:
            m_added.append(MeterChange(lineno, site_id, meter_id, None, nominal_v))
        elif old != nominal_v:
            m_updated.append(MeterChange(lineno, site_id, meter_id, old, nominal_v))
        else:
            m_same += 1
    return Preview(
        rows=rows,
        sites_added=tuple(added),
        sites_updated=tuple(updated),
        sites_unchanged=tuple(unchanged),
        meters_added=tuple(m_added),
        meters_updated=tuple(m_updated),
        meters_unchanged=m_same,
        assignments=tuple(assignments),
        unknown_managers=tuple(unknown),
        errors=tuple(errors),
    )


def preview_text(text: str, sites: Iterable[Site], users: Iterable[User]) -> Preview:
    """parse_csv then preview; structural errors come first, in line order with the rest."""
    rows, structural = parse_csv(text)
    result = preview(rows, sites, users)
    errors = tuple(sorted(structural + result.errors, key=lambda e: e.line))
    return Preview(**{**result.__dict__, "errors": errors})


def shown(value: Any) -> str:
    """A field's value as the preview shows it; empty for none."""
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def registry_digest(sites: Iterable[Site], users: Iterable[User]) -> str:
    """A fingerprint of what a preview compared with: if it changes, the preview is stale."""
    sites = list(sites)
    state = {
        "sites": sorted([s.id, *[shown(v) for v in _facts(s).values()]] for s in sites),
        "meters": sorted([m.site_id, m.meter_id, m.nominal_v] for s in sites for m in s.meters),
        "managers": sorted([u.name, u.role, sorted(u.sites)] for u in users if u.role == "manager"),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()

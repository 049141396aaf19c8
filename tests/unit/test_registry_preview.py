"""The registry-import preview: what a CSV would change, worked out without a database.

Each test checks one promise the admin page makes from it: an added or changed field is
named with its old and new value, an unchanged site is not called changed, assignments
follow the import's rule (manager users only, once), and every bad line is named.
"""

from __future__ import annotations

from datetime import date

from core.registry import CSV_COLUMNS, Meter, Site, User
from dashboard.registry_preview import FieldChange, parse_csv, preview, preview_text, registry_digest

HEADER = ",".join(CSV_COLUMNS)


def site(
    site_id: str = "A001", name: str = "Alpha", manager: str | None = "mgr", nominal: float = 57.74
) -> Site:
    return Site(
        id=site_id,
        kind="account",
        name=name,
        voltage_class_kv=10.0,
        phases=3,
        upper_pct=None,
        lower_pct=None,
        profile="gb",
        feeder_id=None,
        manager=manager,
        meters=(Meter(site_id, f"M{site_id}", nominal),),
    )


def line(
    site_id: str = "A001",
    name: str = "Alpha",
    meter: str = "",
    nominal: str = "57.74",
    manager: str = "mgr",
    phases: str = "3",
) -> str:
    return f"{site_id},account,{name},10,{phases},{meter or 'M' + site_id},{nominal},,,gb,,{manager}"


MGR = User("mgr", "manager", frozenset({"A001"}))


def test_unchanged_file_changes_nothing() -> None:
    result = preview_text(f"{HEADER}\n{line()}\n", [site()], [MGR])
    assert result.applicable and not result.changes_anything
    assert result.sites_unchanged == ("A001",) and result.meters_unchanged == 1
    assert result.errors == () and result.assignments == ()


def test_changed_fields_name_old_and_new() -> None:
    text = f"{HEADER}\n{line(name='Alpha Foods', nominal='58')}\n"
    result = preview_text(text, [site()], [MGR])
    assert [c.site_id for c in result.sites_updated] == ["A001"]
    assert result.sites_updated[0].changes == (FieldChange("name", "Alpha", "Alpha Foods"),)
    assert result.sites_updated[0].line == 2
    assert [(m.meter_id, m.old_nominal_v, m.nominal_v) for m in result.meters_updated] == [
        ("MA001", 57.74, 58.0)
    ]
    assert result.sites_added == () and result.meters_added == ()


def test_added_site_meter_and_assignment() -> None:
    text = f"{HEADER}\n{line('A002', 'Beta')}\n{line('A002', 'Beta', meter='M2b')}\n{line('A003', manager='nobody')}\n"
    result = preview_text(text, [site()], [MGR, User("cust", "customer", frozenset({"A001"}))])
    assert [c.site_id for c in result.sites_added] == ["A002", "A003"]
    added = {c.field: c.new for c in result.sites_added[0].changes}
    assert (
        added["name"] == "Beta"
        and added["phases"] == 3
        and all(c.old is None for c in result.sites_added[0].changes)
    )
    assert [(m.site_id, m.meter_id, m.line) for m in result.meters_added] == [
        ("A002", "MA002", 2),
        ("A002", "M2b", 3),
        ("A003", "MA003", 4),
    ]
    # mgr gets A002 once (two lines name it); "nobody" is no manager user: nothing assigned
    assert [(a.manager, a.site_id, a.line) for a in result.assignments] == [("mgr", "A002", 2)]
    assert [(a.manager, a.line) for a in result.unknown_managers] == [("nobody", 4)]


def test_a_customer_named_as_manager_is_not_assigned() -> None:
    result = preview_text(
        f"{HEADER}\n{line('A002', manager='cust')}\n", [], [User("cust", "customer", frozenset())]
    )
    assert result.assignments == () and [a.manager for a in result.unknown_managers] == ["cust"]


def test_every_bad_line_is_named() -> None:
    text = f"{HEADER}\n{line(phases='2')}\n{line('A002')}\nA003,account\n{line('bad id!')}\n"
    result = preview_text(text, [site()], [MGR])
    assert not result.applicable
    assert [e.line for e in result.errors] == [2, 4, 5]
    assert "phases must be 1 or 3" in result.errors[0].message
    assert "fields" in result.errors[1].message
    assert "site_id" in result.errors[2].message
    assert [c.site_id for c in result.sites_added] == ["A002"], "the good lines are still previewed"


def test_missing_columns_and_empty_files() -> None:
    rows, errors = parse_csv("site_id,name\nA001,x\n")
    assert rows == () and errors[0].line == 1 and "meter_id" in errors[0].message
    assert not preview_text(f"{HEADER}\n", [], []).applicable
    assert preview_text(f"\ufeff{HEADER}\r\n{line()}\r\n", [], [MGR]).applicable, "a BOM and CRLF are fine"


def test_commissioned_column_is_compared() -> None:
    text = f"{HEADER},commissioned\n{line()},2026-03-01\n"
    result = preview_text(text, [site()], [MGR])
    assert result.sites_updated[0].changes == (FieldChange("commissioned", None, date(2026, 3, 1)),)


def test_preview_keeps_the_rows_it_judged() -> None:
    rows, _ = parse_csv(f"{HEADER}\n{line()}\n\n{line('A002')}\n")
    assert [n for n, _ in rows] == [2, 4]
    assert preview(rows, [], []).rows == rows


def test_digest_changes_with_the_registry() -> None:
    base = registry_digest([site()], [MGR])
    assert base == registry_digest([site()], [MGR])
    assert base != registry_digest([site(name="Alpha 2")], [MGR])
    assert base != registry_digest([site(nominal=58.0)], [MGR])
    assert base != registry_digest([site()], [User("mgr", "manager", frozenset())])

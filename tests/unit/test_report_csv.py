"""Report CSV tables: one header row each, no Python reprs, readable by pandas and csv."""

import csv
import io
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.report_csv import cell, fleet_tables, sibling, site_tables, write_tables

REPR = re.compile(r"^(True|False|None|nan)$")

SITE = {
    "site": "A001",
    "name": '铸造厂, "North"',
    "vqr_pct": 99.5,
    "coverage_pct": None,
    "phases": {"a": {"vqr_pct": 99.0, "over_min": 3}},
    "outages": {"count": 2, "open": 1},
    "outage_list": [
        {
            "start": "2025-03-03T09:00:00+08:00",
            "end": "2025-03-03T11:00:00+08:00",
            "duration_s": 7200.0,
            "cause": "planned",
            "length": "sustained",
            "open": False,
            "start_source": "event",
            "end_source": "readings",
        },
        {
            "start": "2025-03-04T22:00:00+08:00",
            "end": None,
            "duration_s": 1800.0,
            "cause": "unplanned",
            "length": "sustained",
            "open": True,
            "start_source": "readings",
            "end_source": None,
        },
    ],
    "supply_side": None,
    "en50160": {
        "profile": "gb",
        "weeks": [
            {
                "week_start": "2025-03-03",
                "days": 7,
                "within_pct": {"a": 100.0, "b": 96.0},
                "valid_10min": 1000,
                "required_10min": 807,
                "verdict": "pass",
            },
            {
                "week_start": "2025-03-10",
                "days": 2,
                "within_pct": {},
                "valid_10min": 0,
                "required_10min": 231,
                "verdict": "insufficient_data",
            },
        ],
    },
    "pq": {"frequency": {"n": 0, "within_pct": None}},
}
FLEET = {
    "from": "2025-03-01",
    "to": "2025-03-31",
    "accounts": 2,
    "voltage": {"vqr_pooled_pct": 99.1, "vqr_mean_pct": 99.2},
    "reliability": {
        "ieee1366": {
            "all_days": {"saifi": 0.5, "caidi_min": None},
            "major_event_days": ["2025-03-10", "2025-03-11"],
            "cemi": {"1": 0.0},
        },
        "dlt836": {"excluding_short": {"rs1_pct": 99.99, "include_short": False}},
        "open_outages": 0,
    },
    "last_mile": [
        {
            "site": "A001",
            "name": "Foundry",
            "feeder": "F01",
            "vqr_pct": 90.0,
            "supply_vqr_pct": 100.0,
            "vqr_gap_pct": -10.0,
        }
    ],
    "last_mile_target_vqr_pct": 99.0,
    "sites": [
        {
            "site": "A001",
            "name": "Foundry",
            "manager": None,
            "feeder": "F01",
            "vqr_pct": 90.0,
            "outages": None,
        },
        {"site": "A002", "name": "Bakery", "manager": "mgr1", "feeder": None, "vqr_pct": None, "outages": 0},
    ],
}


def parse(text: str) -> tuple[pd.DataFrame, list[list[str]]]:
    """Both readers, with their defaults; every row as wide as the header."""
    frame = pd.read_csv(io.StringIO(text))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows and all(len(r) == len(rows[0]) for r in rows), rows
    for value in (v for r in rows for v in r):
        assert not REPR.match(value) and "{'" not in value and "['" not in value, value
    return frame, rows


def test_site_tables():
    tables = site_tables(SITE)
    assert set(tables) == {"", "outages", "weeks", "daily", "dips"}
    main, rows = parse(tables[""])
    assert rows[0] == ["figure", "value"]
    figures = dict(zip(main["figure"], main["value"], strict=True))
    assert figures["phases.a.vqr_pct"] == "99.0" and figures["name"] == '铸造厂, "North"'
    assert pd.isna(figures["coverage_pct"]) and pd.isna(figures["supply_side"])
    assert "outage_list" not in figures and "en50160.weeks" not in figures
    assert figures["en50160.profile"] == "gb"

    outages, rows = parse(tables["outages"])
    assert rows[0] == ["start", "end", "duration_s", "cause", "length", "open", "start_source", "end_source"]
    assert outages["open"].tolist() == [False, True]  # pandas reads true/false as booleans
    assert rows[2][5] == "true" and rows[2][1] == "" and pd.isna(outages["end"][1])
    assert outages["duration_s"].tolist() == [7200.0, 1800.0]

    weeks, rows = parse(tables["weeks"])
    assert rows[0] == [
        "week_start",
        "days",
        "verdict",
        "valid_10min",
        "required_10min",
        "within_pct.a",
        "within_pct.b",
    ]
    assert weeks["verdict"].tolist() == ["pass", "insufficient_data"]
    assert weeks["within_pct.b"][0] == 96.0 and pd.isna(weeks["within_pct.a"][1])


def test_fleet_tables():
    tables = fleet_tables(FLEET)
    sites, rows = parse(tables[""])
    assert rows[0][:5] == ["site", "name", "manager", "feeder", "vqr_pct"]
    assert sites["site"].tolist() == ["A001", "A002"] and pd.isna(sites["outages"][0])

    indices, _ = parse(tables["indices"])
    values = dict(zip(indices["figure"], indices["value"], strict=True))
    assert float(values["reliability.ieee1366.all_days.saifi"]) == 0.5
    assert values["reliability.ieee1366.major_event_days"] == "2025-03-10;2025-03-11"
    assert values["reliability.dlt836.excluding_short.include_short"] == "false"
    assert pd.isna(values["reliability.ieee1366.all_days.caidi_min"])
    assert not any(k.startswith(("sites", "last_mile.")) for k in values)
    assert float(values["last_mile_target_vqr_pct"]) == 99.0

    last_mile, _ = parse(tables["last_mile"])
    assert last_mile.to_dict("records") == [
        {
            "site": "A001",
            "name": "Foundry",
            "feeder": "F01",
            "vqr_pct": 90.0,
            "supply_vqr_pct": 100.0,
            "vqr_gap_pct": -10.0,
        }
    ]


def test_empty_tables_keep_their_header():
    tables = fleet_tables({"sites": [], "last_mile": [], "reliability": {}})
    for text in tables.values():
        frame, rows = parse(text)
        assert len(rows) == 1 and frame.empty
    assert parse(site_tables({"site": "A001"})["outages"])[1][0][0] == "start"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, "true"), (False, "false"), (None, ""), (float("nan"), ""), (2, 2), (["a", 1], "a;1")],
)
def test_cells(value, expected):
    assert cell(value) == expected


@pytest.mark.parametrize("value", [{"a": 1}, [{"a": 1}], [[1]]])
def test_a_structure_in_a_cell_fails_loudly(value):
    with pytest.raises(TypeError, match="table of its own"):
        cell(value)


def test_files_beside_the_main_one(tmp_path: Path):
    assert sibling(tmp_path / "may.csv", "outages") == tmp_path / "may.outages.csv"
    assert sibling(tmp_path / "may", "weeks") == tmp_path / "may.weeks.csv"
    written = write_tables(tmp_path / "may.csv", site_tables(SITE))
    assert [p.name for p in written] == [
        "may.csv",
        "may.outages.csv",
        "may.weeks.csv",
        "may.daily.csv",
        "may.dips.csv",
    ]
    assert pd.read_csv(written[0]).columns.tolist() == ["figure", "value"]  # pandas skips the BOM
    with open(written[1], encoding="utf-8-sig", newline="") as fh:
        assert next(csv.reader(fh))[0] == "start"


def test_empty_tables_of_a_site_leave_no_figure_behind():
    quiet = {**SITE, "outage_list": [], "en50160": {"profile": "gb", "weeks": []}}
    tables = site_tables(quiet)
    names = parse(tables[""])[0]["figure"].tolist()
    assert "outage_list" not in names and "en50160.weeks" not in names and "en50160.profile" in names
    assert parse(tables["outages"])[1] == [
        ["start", "end", "duration_s", "cause", "length", "open", "start_source", "end_source"]
    ]

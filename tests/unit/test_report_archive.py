"""The archive's pure rules: when a month is due, which figures make a new version."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from reports.archive import changed_figures, due_month, tracked_figures
from reports.monthly import month_days, report_number

TZ = ZoneInfo("Asia/Shanghai")


def test_a_month_is_due_only_after_the_delay() -> None:
    assert due_month(datetime(2026, 12, 1, 5, 59, tzinfo=TZ), 6) is None
    assert due_month(datetime(2026, 12, 1, 6, 0, tzinfo=TZ), 6) == "2026-11"
    assert due_month(datetime(2027, 1, 20, tzinfo=TZ), 6) == "2026-12"  # across a year


def test_month_days_and_numbers() -> None:
    assert [str(d) for d in month_days("2028-02")] == ["2028-02-01", "2028-02-29"]
    first, last = month_days("2026-11")
    assert report_number("A001", first, last) == "PQ-202611-A001"
    assert report_number("A001", first, first) == "PQ-20261101-20261101-A001"


REPORT = {
    "vqr_pct": 99.9123,
    "rs1_pct": 99.98765,
    "rs1_excl_short_pct": 100.0,
    "out_min_per_phase": 12.0,
    "outages": {"count": 1, "duration_s": 540.0},
    "coverage_pct": 98.5,
    "event_coverage_pct": 100.0,
    "supply_side": {"vqr_pct": 99.95},
    "phases": {"a": {"vqr_pct": 99.9, "max_v": 236.5, "min_v": 201.0, "mean_v": 221.0}},
    "outage_list": [{}],
}


def test_float_noise_issues_no_version() -> None:
    old = tracked_figures(REPORT)
    new = tracked_figures({**REPORT, "vqr_pct": 99.9123000001, "rs1_pct": 99.987650000001})
    assert changed_figures(old, new) == []


def test_a_printed_change_is_listed_old_and_new() -> None:
    old = tracked_figures(REPORT)
    later = {
        **REPORT,
        "vqr_pct": 99.5,
        "outages": {"count": 2, "duration_s": 840.0},
        "phases": {"a": {**REPORT["phases"]["a"], "min_v": 190.25}},
    }
    changes = {c["figure"]: c for c in changed_figures(old, tracked_figures(later))}
    assert set(changes) == {"vqr_pct", "outages.count", "outages.duration_s", "phases.a.min_v"}
    assert (changes["vqr_pct"]["old_text"], changes["vqr_pct"]["new_text"]) == ("99.912 %", "99.500 %")
    assert changes["outages.duration_s"]["new_text"] == "0:14:00"
    assert changes["phases.a.min_v"]["old"] == 201.0 and changes["phases.a.min_v"]["new"] == 190.25


def test_a_figure_that_becomes_unknown_is_a_change() -> None:
    changes = changed_figures(tracked_figures(REPORT), tracked_figures({**REPORT, "coverage_pct": None}))
    assert [(c["figure"], c["new_text"]) for c in changes] == [("coverage_pct", "—")]

"""EN 50160 weekly verdicts: judged only on enough 10-minute values, never "pass" without data."""

from datetime import date, timedelta

import pandas as pd
import pytest

from analysis.report import en50160_weeks, required_10min
from core.calendar import day_start_ms

TZ = "Asia/Shanghai"
MONDAY = date(2025, 3, 3)


def vq_rows(days: list[date], per_phase: dict[str, tuple[int, int, int]]) -> pd.DataFrame:
    """vq_daily rows as the report reads them: per day and phase (en_n, en_within, en_flagged)."""
    rows = [
        {"time": day_start_ms(d, TZ), "phase": phase, "en_n": n, "en_within": within, "en_flagged": flagged}
        for d in days
        for phase, (n, within, flagged) in per_phase.items()
    ]
    rows += [{"time": day_start_ms(d, TZ), "phase": "all", "monitored_min": 1440} for d in days]
    return pd.DataFrame(rows)


def week(n: int = 7, first: date = MONDAY) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


def only_week(vq: pd.DataFrame, days: list[date], **kw: float) -> dict:
    weeks = en50160_weeks(vq, TZ, day_from=days[0], day_to=days[-1], **kw)
    assert len(weeks) == 1
    return weeks[0]


def test_a_full_good_week_passes():
    days = week()
    w = only_week(vq_rows(days, {p: (144, 144, 0) for p in "abc"}), days)
    assert w == {
        "week_start": "2025-03-03",
        "days": 7,
        "within_pct": {"a": 100.0, "b": 100.0, "c": 100.0},
        "valid_10min": 1008,
        "required_10min": 807,  # 80 % of 1008 is 806.4: "at least" needs 807
        "verdict": "pass",
    }


def test_a_week_below_95_percent_on_one_phase_fails():
    days = week()
    vq = vq_rows(days, {"a": (144, 144, 0), "b": (144, 136, 0), "c": (144, 144, 0)})  # b: 94.4 %
    w = only_week(vq, days)
    assert w["within_pct"]["b"] == pytest.approx(136 / 144 * 100)
    assert w["verdict"] == "fail"


def test_too_few_values_on_one_phase_is_insufficient_however_good_they_are():
    days = week()
    vq = vq_rows(days, {"a": (144, 144, 0), "b": (100, 100, 0), "c": (144, 144, 0)})  # b: 700 values
    w = only_week(vq, days)
    assert (w["valid_10min"], w["required_10min"], w["verdict"]) == (700, 807, "insufficient_data")


def test_806_of_1008_is_below_80_percent():
    days = week()
    vq = vq_rows(days[:6], {"a": (134, 134, 0)})  # 804 values ...
    vq = pd.concat([vq, vq_rows(days[6:], {"a": (2, 2, 0)})])  # ... plus 2 = 806
    assert only_week(vq, days)["verdict"] == "insufficient_data"
    vq = pd.concat([vq, vq_rows(days[6:], {"a": (1, 1, 0)})])  # 807
    assert only_week(vq, days)["verdict"] == "pass"


@pytest.mark.parametrize(("valid", "verdict"), [(576, "pass"), (575, "insufficient_data")])
def test_exactly_80_percent_is_enough(valid, verdict):
    """Monday to Friday inside the period: 5 x 144 = 720 intervals, 80 % of them is exactly 576.
    Flagged values count as valid for coverage (here 76 of them), not for the share within."""
    days = week(5)
    per_day = [(valid - 76) // 5 + (1 if i < (valid - 76) % 5 else 0) for i in range(5)]
    vq = pd.concat(
        [
            vq_rows([d], {"a": (n, n, 76 if i == 0 else 0)})
            for i, (d, n) in enumerate(zip(days, per_day, strict=True))
        ]
    )
    w = only_week(vq, days)
    assert (w["days"], w["required_10min"], w["valid_10min"]) == (5, 576, valid)
    assert w["verdict"] == verdict


def test_a_week_without_data_is_insufficient_never_pass():
    days = week(14)
    weeks = en50160_weeks(vq_rows(days[:7], {"a": (144, 144, 0)}), TZ, day_from=days[0], day_to=days[-1])
    assert [w["verdict"] for w in weeks] == ["pass", "insufficient_data"]
    assert weeks[1] == {
        "week_start": "2025-03-10",
        "days": 7,
        "within_pct": {},
        "valid_10min": 0,
        "required_10min": 807,
        "verdict": "insufficient_data",
    }
    empty = en50160_weeks(pd.DataFrame(), TZ, day_from=days[0], day_to=days[-1])
    assert [w["verdict"] for w in empty] == ["insufficient_data"] * 2


def test_only_flagged_values_leave_nothing_to_judge():
    days = week()
    w = only_week(vq_rows(days, {"a": (0, 0, 144)}), days)
    assert (w["valid_10min"], w["within_pct"], w["verdict"]) == (1008, {"a": None}, "insufficient_data")


def test_a_partial_week_at_the_edge_of_the_period_needs_only_its_own_days():
    days = week(3, MONDAY + timedelta(days=4))  # Friday to Sunday
    w = only_week(vq_rows(days, {"a": (120, 120, 0)}), days)
    assert (w["days"], w["required_10min"], w["valid_10min"], w["verdict"]) == (3, 346, 360, "pass")


def test_the_coverage_share_is_a_parameter():
    days = week()
    vq = vq_rows(days, {"a": (80, 80, 0)})  # 560 of 1008, 55.6 %
    assert only_week(vq, days)["verdict"] == "insufficient_data"
    w = only_week(vq, days, min_coverage_pct=50.0)
    assert (w["required_10min"], w["verdict"]) == (504, "pass")


def test_without_the_period_the_days_with_rows_are_the_period():
    days = week(2)
    weeks = en50160_weeks(vq_rows(days, {"a": (144, 144, 0)}), TZ)
    assert [(w["days"], w["required_10min"], w["verdict"]) for w in weeks] == [(2, 231, "pass")]
    assert en50160_weeks(pd.DataFrame(), TZ) == []


@pytest.mark.parametrize(
    ("days", "pct", "required"), [(7, 80, 807), (5, 80, 576), (1, 80, 116), (7, 100, 1008)]
)
def test_required_10min(days, pct, required):
    assert required_10min(days, pct) == required

"""Which days set T_MED: up to five years of stored history, or the period when history is short."""

from datetime import date

import pytest

from analysis.fleet import MedSample, med_sample, years_before

MAY = (date(2025, 5, 1), date(2025, 5, 31))


def sample(first_data: date | None, min_days: int = 365, years: int = 5) -> MedSample:
    return med_sample(*MAY, first_data, min_history_days=min_days, history_years=years)


def test_enough_history_is_the_sample():
    s = sample(date(2024, 1, 1))
    assert s == MedSample("history", date(2024, 1, 1), date(2025, 4, 30), 486)
    assert s.days == 486


def test_history_is_capped_at_the_years_asked_for():
    s = sample(date(2015, 6, 1))
    assert (s.source, s.first, s.last) == ("history", date(2020, 5, 1), date(2025, 4, 30))
    assert s.days == s.history_days == (date(2025, 5, 1) - date(2020, 5, 1)).days
    assert sample(date(2015, 6, 1), years=1).first == date(2024, 5, 1)


@pytest.mark.parametrize(
    ("first_data", "source"), [(date(2024, 5, 1), "history"), (date(2024, 5, 2), "period")]
)
def test_exactly_the_minimum_history_is_enough(first_data, source):
    assert sample(first_data).source == source  # 2024-05-01 .. 2025-04-30 is 365 days


def test_short_or_no_history_falls_back_to_the_period():
    short = sample(date(2025, 2, 1))
    assert short == MedSample("period", *MAY, 89)
    assert short.days == 31
    assert sample(None) == MedSample("period", *MAY, 0)
    assert sample(date(2025, 5, 10)).history_days == 0  # data only from inside the period


def test_29_february_years_back():
    assert years_before(date(2024, 2, 29), 1) == date(2023, 2, 28)
    assert years_before(date(2024, 2, 29), 4) == date(2020, 2, 29)

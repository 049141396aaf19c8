"""The outage reconstruction rules, one test each, named for the reasoning behind them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.outages import (
    BY_EVENT,
    BY_INFERENCE,
    BY_READINGS,
    Outage,
    SupplyEvidence,
    from_events,
    from_low_minutes,
    merge,
)

MIN = 60_000
H = 3_600_000


def events(*rows: tuple[int, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["time", "type", "event_id"])


def supply_at(*starts_ms: int, interval_s: float = 60.0) -> SupplyEvidence:
    """Readings at these times that show supply on every phase."""
    times = np.array(starts_ms, dtype=np.int64)
    return SupplyEvidence(times, times + int(interval_s * 1000))


def ends(outages: list[Outage]) -> list[tuple[int, int | None, str | None]]:
    return [(o.start_ms, o.end_ms, o.end_source) for o in outages]


def test_a_second_power_off_means_supply_came_back_so_the_first_outage_ends_before_it():
    found = from_events(
        events((0, "power_off", "a"), (5 * H, "power_off", "b"), (5 * H + 10 * MIN, "power_on", "c"))
    )
    assert ends(found) == [(0, 5 * H, BY_INFERENCE), (5 * H, 5 * H + 10 * MIN, BY_EVENT)]


def test_the_first_reading_showing_supply_after_a_power_off_ends_it_when_its_power_on_is_missing():
    ev = events((0, "power_off", "a"), (5 * H, "power_off", "b"), (5 * H + 10 * MIN, "power_on", "c"))
    found = from_events(ev, supply_at(30 * MIN, 31 * MIN, 6 * H))
    assert ends(found) == [(0, 30 * MIN, BY_READINGS), (5 * H, 5 * H + 10 * MIN, BY_EVENT)]


def test_readings_before_or_at_the_power_off_are_not_evidence_of_its_end():
    # The reading that began at the power-off's own instant averaged the moment before it.
    found = from_events(events((10 * MIN, "power_off", "a")), supply_at(0, 5 * MIN, 10 * MIN, 40 * MIN))
    assert ends(found) == [(10 * MIN, 40 * MIN, BY_READINGS)]


def test_an_outage_is_open_only_while_nothing_shows_supply_after_it():
    assert ends(from_events(events((0, "power_off", "a")))) == [(0, None, None)]
    assert ends(from_events(events((0, "power_off", "a")), supply_at(2 * H))) == [(0, 2 * H, BY_READINGS)]


def test_a_late_power_on_replaces_the_end_the_readings_gave():
    before = from_events(events((0, "power_off", "a")), supply_at(2 * H))
    after = from_events(events((0, "power_off", "a"), (2 * H - 20_000, "power_on", "b")), supply_at(2 * H))
    assert ends(before) == [(0, 2 * H, BY_READINGS)]
    assert ends(after) == [(0, 2 * H - 20_000, BY_EVENT)]


def test_a_power_on_inside_the_interval_of_the_first_supplied_reading_still_wins():
    # A 15-minute value that began before the power-on shows supply on average.
    evidence = supply_at(H, interval_s=900)
    found = from_events(events((0, "power_off", "a"), (H + 7 * MIN, "power_on", "b")), evidence)
    assert ends(found) == [(0, H + 7 * MIN, BY_EVENT)]


def test_a_power_on_after_readings_that_showed_supply_belongs_to_a_lost_power_off():
    # Supply was seen for a whole minute before the power-on: that record closes another outage.
    found = from_events(events((0, "power_off", "a"), (5 * H, "power_on", "b")), supply_at(H))
    assert ends(found) == [(0, H, BY_READINGS)]


def test_a_power_on_without_a_power_off_starts_nothing():
    assert from_events(events((H, "power_on", "a"))) == []
    assert ends(from_events(events((H, "power_on", "a"), (2 * H, "power_off", "b")))) == [(2 * H, None, None)]


def test_an_interruption_seen_in_readings_before_an_orphan_power_on_still_counts():
    low = np.zeros(120, dtype=bool)
    low[10:25] = True  # every phase below 10 % from minute 10 to 25
    found = merge(from_events(events((90 * MIN, "power_on", "a"))) + from_low_minutes(low, 0))
    assert ends(found) == [(10 * MIN, 25 * MIN, BY_READINGS)]
    assert found[0].start_source == BY_READINGS


def test_replays_and_same_instant_records_collapse_whatever_their_order():
    ev = events(
        (H, "power_on", "b"),
        (0, "power_off", "a"),
        (0, "power_off", "a"),
        (0, "power_off", "a-again"),
        (H, "power_on", "b-again"),
    )
    assert ends(from_events(ev)) == [(0, H, BY_EVENT)]
    assert from_events(ev.iloc[::-1]) == from_events(ev)


def test_a_replayed_id_keeps_its_earliest_time_whatever_the_arrival_order():
    ev = events((0, "power_off", "a"), (30 * MIN, "power_off", "a"), (H, "power_on", "b"))
    assert ends(from_events(ev)) == ends(from_events(ev.iloc[::-1])) == [(0, H, BY_EVENT)]


def test_a_power_on_at_the_same_instant_as_the_next_power_off_closes_the_first_outage():
    ev = events((0, "power_off", "a"), (H, "power_on", "b"), (H, "power_off", "c"), (2 * H, "power_on", "d"))
    assert ends(from_events(ev)) == [(0, H, BY_EVENT), (H, 2 * H, BY_EVENT)]


def test_an_inferred_end_touching_the_next_outage_keeps_them_apart():
    found = merge(from_events(events((0, "power_off", "a"), (H, "power_off", "b"), (2 * H, "power_on", "c"))))
    assert len(found) == 2


def test_readings_low_across_both_power_offs_make_them_one_outage():
    # The readings say supply never came back: the second power_off was a second record.
    low = np.zeros(180, dtype=bool)
    low[0:150] = True
    ev = events((0, "power_off", "a"), (H, "power_off", "b"), (150 * MIN, "power_on", "c"))
    found = merge(from_events(ev) + from_low_minutes(low, 0))
    assert ends(found) == [(0, 150 * MIN, BY_EVENT)]


def test_an_event_outage_extended_by_low_readings_ends_where_the_readings_say():
    low = np.zeros(60, dtype=bool)
    low[0:20] = True
    found = merge(
        from_events(events((0, "power_off", "a"), (10 * MIN, "power_on", "b"))) + from_low_minutes(low, 0)
    )
    assert ends(found) == [(0, 20 * MIN, BY_READINGS)]
    assert found[0].source == "event" and found[0].start_source == BY_EVENT


def test_supply_evidence_needs_every_phase_present_and_above_ten_percent():
    times = np.array([0, MIN, 2 * MIN, 3 * MIN], dtype=np.int64)
    a = np.array([1.0, 1.0, 0.05, 1.0])
    b = np.array([1.0, np.nan, 1.0, 0.10])
    evidence = SupplyEvidence.from_readings(times, np.full(4, 60.0), [a, b])
    assert evidence.start_ms.tolist() == [0, 3 * MIN]
    assert evidence.end_ms.tolist() == [MIN, 4 * MIN]

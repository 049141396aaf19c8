"""The chart builders of the account and feeder pages (dashboard.charts): pure functions of
frames and report dicts, so every drawing rule is checked without a server."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.limits import validate_limits
from dashboard.charts import (
    MAX_POINTS,
    NICE_BUCKETS_S,
    STATS,
    bucket_seconds,
    duration_curve_figure,
    envelope_figure,
    figure_points,
    itic_figure,
    outage_rows,
    outage_spans,
    outage_timeline_figure,
    primary_nominal,
    silent_periods,
    volts,
    with_breaks,
)

TZ = "Asia/Shanghai"
DAY0 = 1_764_518_400_000  # 2025-12-01 00:00 in Shanghai (UTC+8), as UTC ms
MIN = 60_000


def envelope_frame(bucket_ms: int, indices: list[int], base: float = 57.7) -> pd.DataFrame:
    """Buckets with data at DAY0 + i * bucket (fill(none): missing ones are simply absent)."""
    rows = []
    for i in indices:
        row: dict[str, float] = {"time": DAY0 + i * bucket_ms}
        for n, field in enumerate(("ua", "ub", "uc")):
            mean = base + 0.1 * n + 0.01 * i
            row.update({f"min_{field}": mean - 0.5, f"mean_{field}": mean, f"max_{field}": mean + 0.5})
        rows.append(row)
    return pd.DataFrame(rows)


def trace(fig: dict, name: str) -> dict:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, [t.get("name") for t in fig["data"]]
    return found[0]


# -- gaps ------------------------------------------------------------------------------------
def test_breaks_go_where_buckets_are_missing_and_nowhere_else() -> None:
    step = 15 * MIN
    df = envelope_frame(step, [0, 1, 2, 5, 6, 9])  # 3-4 and 7-8 missing
    out = with_breaks(df, step, ["mean_ua"])
    assert out["time"].tolist() == [DAY0 + i * step for i in (0, 1, 2, 3, 5, 6, 7, 9)]
    assert out["mean_ua"].isna().tolist() == [False, False, False, True, False, False, True, False]


def test_no_break_in_contiguous_buckets() -> None:
    df = envelope_frame(15 * MIN, list(range(10)))
    assert not with_breaks(df, 15 * MIN, ["mean_ua"])["mean_ua"].isna().any()


def test_envelope_never_bridges_a_missing_bucket() -> None:
    """Between two drawn values of every line, no missing bucket is crossed without a null."""
    step = 15 * MIN
    present = [0, 1, 2, 3, 10, 11, 12, 40, 41, 95]
    fig = envelope_figure(envelope_frame(step, present), bucket_s=step // 1000, tz=TZ, band=(53.7, 61.78))
    drawn = [t for t in fig["data"] if len(t.get("y") or []) > 1]
    assert len(drawn) == 9  # min, mean, max of three phases
    for t in drawn:
        xs = [int(pd.Timestamp(x, tz=TZ).timestamp() * 1000) for x in t["x"]]
        previous = None
        for x, y in zip(xs, t["y"], strict=True):
            if y is None:
                previous = None
                continue
            if previous is not None:
                assert x - previous == step, f"{t['name']} bridges {previous}..{x}"
            previous = x
        assert t["y"].count(None) == 3  # three missing runs


def test_envelope_fills_between_min_and_max_and_draws_the_band() -> None:
    fig = envelope_figure(envelope_frame(15 * MIN, [0, 1, 2]), bucket_s=900, tz=TZ, band=(53.70, 61.78))
    assert trace(fig, "Ua min–max")["fill"] == "tonexty"
    assert trace(fig, "Ua mean")["y"] == [57.7, 57.71, 57.72]
    assert trace(fig, "Ua mean")["x"][0] == "2025-12-01T00:00:00"  # local wall-clock time
    texts = [a["text"] for a in fig["layout"]["annotations"]]
    assert "upper limit 61.78 V" in texts and "lower limit 53.70 V" in texts
    lines = [s["y0"] for s in fig["layout"]["shapes"] if s["type"] == "line"]
    assert lines == [61.78, 53.70]


def test_line_voltages_are_drawn_when_no_phase_voltage_came() -> None:
    df = envelope_frame(15 * MIN, [0, 1]).rename(columns=lambda c: c.replace("ua", "uab"))
    df = df[[c for c in df.columns if c == "time" or c.endswith("uab")]]
    fig = envelope_figure(df, bucket_s=900, tz=TZ, band=None)
    assert [t["name"] for t in fig["data"]] == ["Uab max", "Uab min–max", "Uab mean"]


# -- the points limit ------------------------------------------------------------------------
@pytest.mark.parametrize("days", [1, 7, 30, 92, 366])
def test_bucket_keeps_a_trend_under_the_points_limit(days: int) -> None:
    span = days * 86_400_000
    bucket = bucket_seconds(span, len(STATS) * 3)
    buckets = math.ceil(span / (bucket * 1000))
    assert buckets * 9 <= MAX_POINTS
    smaller = [b for b in NICE_BUCKETS_S if b < bucket]
    if smaller:  # and it is the finest bucket that does
        assert math.ceil(span / (smaller[-1] * 1000)) * 9 > MAX_POINTS - 50


def test_full_thirty_day_envelope_with_outages_stays_under_the_limit() -> None:
    span = 30 * 86_400_000
    bucket = bucket_seconds(span, 9)
    n = span // (bucket * 1000)
    every_other = [i for i in range(n) if i % 2 == 0]  # the worst case for breaks
    outages: list[dict[str, Any]] = [
        {"start": "2025-12-02T10:00:00+08:00", "end": "2025-12-02T11:00:00+08:00", "cause": "unplanned"},
        {"start": "2025-12-03T10:00:00+08:00", "end": None, "open": True},
    ]
    spans = outage_spans(outages, DAY0, DAY0 + span, DAY0 + span)
    for present in (list(range(n)), every_other):
        fig = envelope_figure(
            envelope_frame(bucket * 1000, present), bucket_s=bucket, tz=TZ, band=None, spans=spans
        )
        assert 0 < figure_points(fig) <= MAX_POINTS


# -- outages ---------------------------------------------------------------------------------
def test_outage_spans_are_shaded_clipped_and_open_ones_run_to_now() -> None:
    outages: list[dict[str, Any]] = [
        # began before the chart: clipped to its start
        {"start": "2025-11-30T23:00:00+08:00", "end": "2025-12-01T01:00:00+08:00", "cause": "unplanned"},
        {"start": "2025-12-01T10:00:00+08:00", "end": "2025-12-01T10:02:00+08:00", "length": "short"},
        {"start": "2025-12-01T12:00:00+08:00", "end": "2025-12-01T13:00:00+08:00", "cause": "planned"},
        {"start": "2025-12-01T20:00:00+08:00", "end": None, "open": True},
    ]
    now = DAY0 + 21 * 3_600_000
    spans = outage_spans(outages, DAY0, DAY0 + 86_400_000, now)
    assert [(s["kind"], s["start_ms"], s["end_ms"]) for s in spans] == [
        ("unplanned", DAY0, DAY0 + 3_600_000),
        ("short", DAY0 + 600 * MIN, DAY0 + 602 * MIN),
        ("planned", DAY0 + 720 * MIN, DAY0 + 780 * MIN),
        ("open", DAY0 + 1200 * MIN, now),
    ]
    fig = envelope_figure(envelope_frame(15 * MIN, [0, 1]), bucket_s=900, tz=TZ, band=None, spans=spans)
    rects = [s for s in fig["layout"]["shapes"] if s["type"] == "rect"]
    assert [(r["x0"], r["x1"]) for r in rects] == [
        ("2025-12-01T00:00:00", "2025-12-01T01:00:00"),
        ("2025-12-01T10:00:00", "2025-12-01T10:02:00"),
        ("2025-12-01T12:00:00", "2025-12-01T13:00:00"),
        ("2025-12-01T20:00:00", "2025-12-01T21:00:00"),
    ]
    assert all(r["yref"] == "paper" and r["layer"] == "below" for r in rects)
    legend = {t["name"] for t in fig["data"] if t.get("mode") == "markers"}
    assert legend == {"Outage (unplanned)", "Short interruption", "Outage (planned)", "Outage (still open)"}
    timeline = outage_timeline_figure(spans, TZ, DAY0, DAY0 + 86_400_000)
    assert sum(t["y"].count(None) for t in timeline["data"]) == 4  # one bar each


def test_outage_outside_the_chart_is_not_drawn() -> None:
    outages = [{"start": "2025-11-29T10:00:00+08:00", "end": "2025-11-29T11:00:00+08:00"}]
    assert outage_spans(outages, DAY0, DAY0 + 86_400_000, DAY0 + 86_400_000) == []


def test_outage_rows_say_how_the_end_was_known() -> None:
    outages: list[dict[str, Any]] = [
        {
            "start": "2025-12-01T12:30:00+08:00",
            "end": "2025-12-01T13:15:30+08:00",
            "duration_s": 2730.0,
            "cause": "planned",
            "length": "sustained",
            "open": False,
            "end_source": "inferred",
            "continued": False,
        },
        {
            "start": "2025-12-01T20:00:00+08:00",
            "end": None,
            "duration_s": 60.0,
            "cause": "unplanned",
            "length": "short",
            "open": True,
            "end_source": None,
            "continued": True,
        },
    ]
    rows = outage_rows(outages, TZ)
    assert rows[0]["start"] == "2025-12-01 12:30:00" and rows[0]["end"] == "2025-12-01 13:15:30"
    assert rows[0]["duration"] == "0:45:30"
    assert (rows[0]["cause"], rows[0]["length"], rows[0]["end_source"]) == (
        "planned",
        "sustained",
        "inferred (next power-off)",
    )
    assert (rows[1]["end"], rows[1]["status"], rows[1]["end_source"]) == ("open", "open", "still open")
    assert rows[1]["continued"] == "began before the period"


# -- silent periods --------------------------------------------------------------------------
def test_silent_periods_longer_than_three_intervals() -> None:
    step = 60
    minutes = [m for m in range(0, 600) if not 120 <= m < 240 and m not in (300, 301)]
    times = [DAY0 + m * MIN for m in minutes]
    gaps = silent_periods(times, step, 60.0, DAY0, DAY0 + 720 * MIN)
    # 02:00-04:00 silent; the two missing minutes at 05:00 are not; 10:00-12:00 at the end is.
    assert gaps == [(DAY0 + 120 * MIN, DAY0 + 240 * MIN), (DAY0 + 600 * MIN, DAY0 + 720 * MIN)]


def test_fifteen_minute_readings_are_not_silent_between_them() -> None:
    times = [DAY0 + m * MIN for m in range(0, 720, 15)]
    assert silent_periods(times, 300, 900.0, DAY0, DAY0 + 720 * MIN) == []


# -- nominal voltage: primary and PT secondary -----------------------------------------------
def test_pt_secondary_meter_shows_the_primary_nominal() -> None:
    nominal = primary_nominal(10.0, 3, 57.74)
    assert nominal.line_v == 10_000.0
    assert nominal.phase_v == pytest.approx(5773.5, abs=0.1)
    assert nominal.secondary and nominal.ratio == pytest.approx(100.0, abs=0.01)
    assert (volts(nominal.line_v), volts(nominal.phase_v), volts(nominal.metered_v)) == (
        "10 kV",
        "5.77 kV",
        "57.74 V",
    )
    lower, upper = validate_limits(10.0, 3, None, None).band(nominal.phase_v)
    assert (volts(lower), volts(upper)) == ("5.37 kV", "6.18 kV")


def test_primary_meters_are_not_called_secondary() -> None:
    assert not primary_nominal(10.0, 3, 5773.5).secondary
    assert not primary_nominal(0.38, 3, 220.0).secondary
    single = primary_nominal(0.22, 1, 220.0)
    assert single.line_v is None and single.phase_v == pytest.approx(220.0) and not single.secondary
    hv = primary_nominal(110.0, 3, 57.74)
    assert hv.secondary and volts(hv.line_v) == "110 kV" and hv.ratio == pytest.approx(1100.0, abs=0.5)


# -- duration curve and ITIC -----------------------------------------------------------------
def test_duration_curve_is_descending_in_percent_of_nominal() -> None:
    df = envelope_frame(15 * MIN, list(range(20)), base=57.74)
    fig = duration_curve_figure(df, 57.74, (7.0, 7.0))
    ua = trace(fig, "Ua")["y"]
    assert ua == sorted(ua, reverse=True) and ua[-1] == pytest.approx(100.0)
    assert sorted(s["y0"] for s in fig["layout"]["shapes"]) == [93.0, 107.0]


def test_itic_chart_with_events_and_empty() -> None:
    events = pd.DataFrame(
        {
            "time": [DAY0, DAY0],
            "type": ["dip", "swell"],
            "duration_s": [0.1, 0.01],
            "level_pct": [60.0, 130.0],
        }
    )
    fig = itic_figure(events)
    assert trace(fig, "Dips")["x"] == [0.1] and trace(fig, "Dips")["y"] == [60.0]
    assert trace(fig, "Swells")["y"] == [130.0]
    upper = trace(fig, "ITIC upper curve")
    i = int(np.argmin(np.abs(np.array(upper["x"]) - 0.1)))
    assert upper["y"][i] == 120.0
    assert not fig["layout"]["annotations"]

    empty = itic_figure(events.iloc[0:0])
    assert {t["name"] for t in empty["data"]} == {"ITIC upper curve", "ITIC lower curve", "SEMI F47 curve"}
    assert empty["layout"]["annotations"][0]["text"] == "No dips or swells recorded in this period."

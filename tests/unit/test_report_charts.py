"""Charts of the monthly PDF: valid PNGs for normal, unknown and empty input; Chinese glyphs
present; None never drawn as 0; thread-safe, global-state-free and fast enough for the archive."""

from __future__ import annotations

import io
import logging
import math
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from PIL import Image

from reports import charts
from reports.charts import (
    CJK_FONT_PATH,
    daily_vqr_png,
    envelope_png,
    itic_png,
    outage_timeline_png,
)

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
START, END = "2026-11-01T00:00:00+08:00", "2026-12-01T00:00:00+08:00"
NONE_DAYS = {5, 6, 17}  # day of month without a rate or voltages
ZH = {
    "Daily voltage qualification rate": "每日电压合格率",
    "Qualification rate (%)": "合格率（%）",
    "Meets target": "达到目标",
    "Below target": "低于目标",
    "Target %(pct)s %%": "目标 %(pct)s %%",
    "No data": "无数据",
    "No readings in this period.": "该时段没有测量数据。",
    "Daily voltage: mean and min–max band": "每日电压：平均值及最小–最大值范围",
    "Voltage (V)": "电压（V）",
    "Daily min–max": "日最小–最大值",
    "Upper limit": "上限",
    "Lower limit": "下限",
    "Phase A": "A相",
    "Phase B": "B相",
    "Phase C": "C相",
    "Outage timeline": "停电时间轴",
    "Planned": "计划停电",
    "Unplanned": "故障停电",
    "Unknown cause": "原因不明",
    "Still open at period end": "期末尚未恢复",
    "No outages in this period.": "该时段没有停电。",
    "Dips and swells on the ITIC and SEMI F47 curves": "ITIC 与 SEMI F47 曲线上的电压暂降和暂升",
    "Duration (s)": "持续时间（秒）",
    "Voltage relative to nominal (%)": "电压相对标称值（%）",
    "ITIC upper curve": "ITIC 上限曲线",
    "ITIC lower curve": "ITIC 下限曲线",
    "SEMI F47 curve": "SEMI F47 曲线",
    "Dips": "电压暂降",
    "Swells": "电压暂升",
    "No dips or swells recorded in this period.": "该时段没有记录到电压暂降或暂升。",
}


def english(text: str) -> str:
    return text


def chinese(text: str) -> str:
    return ZH.get(text, text)


def _daily() -> list[dict[str, Any]]:
    rows = []
    for d in range(1, 31):
        phases: dict[str, dict[str, float | None]] = {}
        for k, p in enumerate("abc"):
            if d in NONE_DAYS:
                phases[p] = {"max_v": None, "min_v": None, "mean_v": None}
            else:
                mean = 220.0 + 3.0 * math.sin(d / 3.0 + k)
                phases[p] = {"max_v": mean + 6.0, "min_v": mean - 9.0, "mean_v": mean}
        vqr = None if d in NONE_DAYS else round(97.0 + 3.0 * abs(math.sin(d)), 2)
        rows.append({"day": f"2026-11-{d:02d}", "vqr_pct": vqr, "phases": phases})
    return rows


def _all_none() -> list[dict[str, Any]]:
    none = {"max_v": None, "min_v": None, "mean_v": None}
    return [
        {"day": f"2026-11-{d:02d}", "vqr_pct": None, "phases": {p: dict(none) for p in "abc"}}
        for d in range(1, 31)
    ]


PHASES = {p: {"nominal_v": 220.0, "lower_v": 198.0, "upper_v": 235.4} for p in "abc"}
OUTAGES: list[dict[str, Any]] = [
    {
        "start": "2026-11-03T09:00:00+08:00",
        "end": "2026-11-03T15:00:00+08:00",
        "duration_s": 21600.0,
        "cause": "planned",
        "length": "sustained",
        "open": False,
    },
    {
        "start": "2026-11-10T02:13:00+08:00",
        "end": "2026-11-10T02:14:00+08:00",
        "duration_s": 60.0,
        "cause": "unplanned",
        "length": "short",
        "open": False,
    },
    {
        "start": "2026-11-18T14:00:00+08:00",
        "end": "2026-11-19T01:00:00+08:00",
        "duration_s": 39600.0,
        "cause": "unplanned",
        "length": "sustained",
        "open": False,
    },
    {
        "start": "2026-11-29T20:00:00+08:00",
        "end": None,
        "duration_s": 3600.0,
        "cause": "unknown",
        "length": "sustained",
        "open": True,
    },
]
DIPS: list[dict[str, Any]] = [
    {"type": "dip", "duration_s": 0.08, "level_pct": 45.0},
    {"type": "dip", "duration_s": 0.3, "level_pct": 72.0},
    {"type": "dip", "duration_s": 2.5, "level_pct": 85.0},
    {"type": "swell", "duration_s": 0.01, "level_pct": 125.0},
    {"type": "dip", "duration_s": None, "level_pct": 50.0},  # unknown: not drawn
]
ALL_NONE_OUTAGES: list[dict[str, Any]] = [
    {"start": None, "end": None, "duration_s": None, "cause": None, "length": None, "open": False}
]
ALL_NONE_DIPS: list[dict[str, Any]] = [{"type": "dip", "duration_s": None, "level_pct": None}]


def render_all(gettext: Any, **kw: Any) -> dict[str, bytes]:
    return {
        "vqr": daily_vqr_png(_daily(), 99.0, gettext, **kw),
        "envelope": envelope_png(_daily(), PHASES, gettext, **kw),
        "outages": outage_timeline_png(OUTAGES, START, END, gettext, **kw),
        "itic": itic_png(DIPS, gettext, **kw),
    }


def assert_png(data: bytes, height_cm: float) -> None:
    assert data[:8] == PNG_MAGIC
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        width, height = img.size
    # 17 cm wide at 150 dpi; 5.5 or 6 cm tall.
    assert abs(width - 17.0 / 2.54 * 150) <= 1
    assert abs(height - height_cm / 2.54 * 150) <= 1


@pytest.mark.parametrize("case", ["normal", "all_none", "empty"])
def test_every_chart_is_a_png_of_the_page_width(case: str) -> None:
    daily = {"normal": _daily(), "all_none": _all_none(), "empty": []}[case]
    outages = {"normal": OUTAGES, "all_none": ALL_NONE_OUTAGES, "empty": []}[case]
    dips = {"normal": DIPS, "all_none": ALL_NONE_DIPS, "empty": []}[case]
    phases = {} if case == "empty" else PHASES
    target = None if case == "empty" else 99.0
    assert_png(daily_vqr_png(daily, target, english), 5.5)
    assert_png(envelope_png(daily, phases, english), 6.0)
    assert_png(outage_timeline_png(outages, START, END, english), 5.5)
    assert_png(itic_png(dips, english), 6.0)


def _glyph_problems(records: list[logging.LogRecord], caught: list[warnings.WarningMessage]) -> list[str]:
    texts = [str(w.message) for w in caught] + [r.getMessage() for r in records]
    # matplotlib's words for a glyph drawn as a box and for a font family it could not find.
    return [t for t in texts if "missing from font" in t or "not found" in t or "Failed to find" in t]


@pytest.mark.skipif(not CJK_FONT_PATH.is_file(), reason="Debian package fonts-wqy-microhei not installed")
def test_chinese_labels_render_without_missing_glyphs(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="matplotlib"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        pngs = render_all(chinese)
        pngs["empty_outages"] = outage_timeline_png([], START, END, chinese)
        pngs["empty_itic"] = itic_png([], chinese)
        pngs["none_vqr"] = daily_vqr_png(_all_none(), 99.5, chinese)
    assert _glyph_problems(caplog.records, caught) == []
    assert all(p[:8] == PNG_MAGIC for p in pngs.values())
    assert charts.font_families()[0] == "WenQuanYi Micro Hei"
    # The Chinese chart differs from the English one: the labels really changed.
    assert pngs["vqr"] != daily_vqr_png(_daily(), 99.0, english)


def test_without_the_cjk_font_it_warns_once_and_falls_back(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-font.ttc"
    with caplog.at_level(logging.WARNING, logger="reports.charts"):
        first = itic_png(DIPS, english, font_path=missing)
        itic_png([], english, font_path=missing)
    assert first[:8] == PNG_MAGIC
    mine = [r for r in caplog.records if r.name == "reports.charts"]
    assert len(mine) == 1 and str(missing) in mine[0].getMessage()
    assert charts.font_families(missing) == ["DejaVu Sans"]


def test_days_without_a_rate_are_markers_not_bars_of_zero() -> None:
    fig = charts._daily_vqr_figure(_daily(), 99.0, english)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_gid() == "vqr"]
    expected = {d - 1: r["vqr_pct"] for d, r in enumerate(_daily(), start=1) if r["vqr_pct"] is not None}
    got = {round(b.get_x() + b.get_width() / 2): b.get_height() for b in bars}
    assert got == pytest.approx(expected)
    assert min(got.values()) > 90.0  # no bar of 0 hiding among them
    markers = [p for p in ax.patches if p.get_gid() == "no-data"]
    centres = sorted(round(p.get_bbox().x0 + p.get_bbox().width / 2) for p in markers)
    assert centres == sorted(d - 1 for d in NONE_DAYS)
    bottom, top = ax.get_ylim()
    assert bottom == 90.0 and top == 100.5


def test_a_day_missing_from_the_list_is_a_marker_too_and_the_axis_zooms_out_for_a_bad_day() -> None:
    daily = [
        {"day": "2026-11-01", "vqr_pct": 99.0},
        {"day": "2026-11-03", "vqr_pct": 80.4},
    ]
    ax = charts._daily_vqr_figure(daily, None, english).axes[0]
    assert len([p for p in ax.patches if p.get_gid() == "vqr"]) == 2
    assert len([p for p in ax.patches if p.get_gid() == "no-data"]) == 1
    assert ax.get_ylim()[0] == 79.0


def test_all_none_days_draw_no_bars_and_say_so() -> None:
    ax = charts._daily_vqr_figure(_all_none(), 99.0, english).axes[0]
    assert [p for p in ax.patches if p.get_gid() == "vqr"] == []
    assert len([p for p in ax.patches if p.get_gid() == "no-data"]) == 30
    assert [t.get_text() for t in ax.texts if t.get_gid() == "note"] == ["No readings in this period."]


def test_envelope_gaps_stay_gaps() -> None:
    ax = charts._envelope_figure(_daily(), PHASES, english).axes[0]
    gaps = [d - 1 for d in NONE_DAYS]
    for p in "abc":
        (mean,) = [line for line in ax.lines if line.get_gid() == f"mean-{p}"]
        y = np.asarray(mean.get_ydata(), dtype=float)
        assert np.isnan(y[gaps]).all()  # unknown, not 0
        assert np.nanmin(y) > 200.0
        for band in [c for c in ax.collections if c.get_gid() == f"band-{p}"]:
            assert isinstance(band, PolyCollection | LineCollection)
            for path in band.get_paths():
                xs = path.vertices[:, 0]
                # No polygon reaches over a gap day: it would bridge it.
                assert not any(xs.min() <= g <= xs.max() for g in gaps)
    limits = sorted(line.get_ydata()[0] for line in ax.lines if str(line.get_gid()).startswith("limit-"))
    assert limits == [198.0, 235.4]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Phase A", "Phase B", "Phase C", "Daily min–max", "Upper limit", "Lower limit"]


def test_envelope_shows_a_lone_day_between_gaps() -> None:
    daily = _daily()
    for i in (19, 21):  # 20 and 22 November unknown: the 21st (index 20) is known alone
        daily[i]["phases"]["b"] = {"max_v": None, "min_v": None, "mean_v": None}
    ax = charts._envelope_figure(daily, PHASES, english).axes[0]
    lone = [c for c in ax.collections if c.get_gid() == "band-b" and isinstance(c, LineCollection)]
    assert len(lone) == 1
    (segment,) = lone[0].get_segments()
    assert segment[0][0] == 20.0 and segment[0][1] < segment[1][1]


def test_outage_timeline_spans_colours_and_the_open_end() -> None:
    ax = charts._outage_timeline_figure(OUTAGES, START, END, english).axes[0]
    by_gid: dict[str, list[Any]] = {}
    for p in ax.patches:
        by_gid.setdefault(str(p.get_gid()), []).append(p)
    assert len(by_gid["outage-planned"]) == 1 and len(by_gid["outage-unplanned"]) == 2
    assert by_gid["outage-planned"][0].get_facecolor() != by_gid["outage-unplanned"][0].get_facecolor()
    (open_span,) = by_gid["outage-open"]
    end = mdates.date2num(np.datetime64("2026-11-30T16:00:00"))  # period end in UTC
    assert open_span.get_x() + open_span.get_width() == pytest.approx(end)
    # A one-minute outage is still visible: at least 1/300 of the month wide.
    short = min(by_gid["outage-unplanned"], key=lambda p: p.get_width())
    assert short.get_width() == pytest.approx(30.0 / 300.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Unplanned", "Planned", "Unknown cause"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Unplanned", "Planned", "Unknown cause", "Still open at period end"]


def test_empty_outage_timeline_keeps_the_axis_and_notes_it() -> None:
    ax = charts._outage_timeline_figure([], START, END, chinese).axes[0]
    assert [t.get_text() for t in ax.texts] == ["该时段没有停电。"]
    utc = [mdates.date2num(np.datetime64(t)) for t in ("2026-10-31T16:00:00", "2026-11-30T16:00:00")]
    assert ax.get_xlim() == pytest.approx(utc)
    assert ax.get_yticks().size == 0


def test_itic_draws_the_curves_and_known_points_only() -> None:
    ax = charts._itic_figure(DIPS, english).axes[0]
    assert [line.get_label() for line in ax.lines] == [
        "ITIC upper curve",
        "ITIC lower curve",
        "SEMI F47 curve",
    ]
    dips = [c for c in ax.collections if c.get_gid() == "dip"]
    assert len(dips) == 1 and len(dips[0].get_offsets()) == 3
    assert ax.get_xscale() == "log" and ax.get_ylim() == (0.0, 220.0)
    empty = charts._itic_figure([], english).axes[0]
    assert [t.get_text() for t in empty.texts] == ["No dips or swells recorded in this period."]
    assert len(empty.lines) == 3


def test_rendering_leaves_matplotlib_settings_alone_and_is_thread_safe() -> None:
    before = dict(matplotlib.rcParams)
    serial = render_all(english)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda _: render_all(english), range(4)))
    assert all(p == serial for p in parallel)  # same bytes: no state leaks between threads
    assert dict(matplotlib.rcParams) == before


def test_no_pyplot_is_imported() -> None:
    code = (
        "import sys; from reports.charts import itic_png; itic_png([], str); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_the_four_charts_are_fast_enough_for_the_archive(capsys: pytest.CaptureFixture[str]) -> None:
    render_all(english)  # fonts registered, curves cached
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        render_all(chinese)
        times.append(time.perf_counter() - t0)
    with capsys.disabled():
        print(f"\nfour report charts: best {min(times):.3f} s of {[round(t, 3) for t in times]}")
    assert min(times) < 1.0  # loose: catches regressions (target is well under 0.4 s)

"""Charts of the monthly PDF: ReportLab drawings of the page width for normal, unknown and
empty input, whose labels are real text (Chinese included) that ``pdftotext`` reads back;
None never drawn as 0; no matplotlib; fast enough for the archive."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from reportlab.graphics import renderPDF
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics

from reports import charts, pdf
from reports.charts import daily_vqr_chart, envelope_chart, itic_chart, outage_timeline_chart

ROOT = Path(__file__).resolve().parents[2]
HAS_CJK_FONT = pdf.FONT_PATH.is_file()

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


def render_all(gettext: Any, **kw: Any) -> dict[str, Drawing]:
    return {
        "vqr": daily_vqr_chart(_daily(), 99.0, gettext, **kw),
        "envelope": envelope_chart(_daily(), PHASES, gettext, **kw),
        "outages": outage_timeline_chart(OUTAGES, START, END, gettext, **kw),
        "itic": itic_chart(DIPS, gettext, **kw),
    }


def case_charts(case: str, gettext: Any = english) -> dict[str, Drawing]:
    daily = {"normal": _daily(), "all_none": _all_none(), "empty": []}[case]
    outages = {"normal": OUTAGES, "all_none": ALL_NONE_OUTAGES, "empty": []}[case]
    dips = {"normal": DIPS, "all_none": ALL_NONE_DIPS, "empty": []}[case]
    phases = {} if case == "empty" else PHASES
    target = None if case == "empty" else 99.0
    return {
        "vqr": daily_vqr_chart(daily, target, gettext),
        "envelope": envelope_chart(daily, phases, gettext),
        "outages": outage_timeline_chart(outages, START, END, gettext),
        "itic": itic_chart(dips, gettext),
    }


def pdf_text(drawing: Drawing, path: Path) -> str:
    """The drawing alone as a one-page PDF, and the text poppler reads from it."""
    renderPDF.drawToFile(drawing, str(path))
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.MULTILINE), info
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


def flat(text: str) -> str:
    return "".join(text.split())  # pdftotext may break a line or space a label; the words stay


def plot_box(drawing: Drawing) -> tuple[float, float]:
    """Left and right edge of the plot: the fixed margins."""
    return charts.LEFT_CM * cm, drawing.width - charts.RIGHT_CM * cm


HEIGHTS = {"vqr": 5.5, "envelope": 6.0, "outages": 5.5, "itic": 6.0}
TITLES = {
    "vqr": "Daily voltage qualification rate",
    "envelope": "Daily voltage: mean and min–max band",
    "outages": "Outage timeline",
    "itic": "Dips and swells on the ITIC and SEMI F47 curves",
}
NOTES = {
    "vqr": "No readings in this period.",
    "envelope": "No readings in this period.",
    "outages": "No outages in this period.",
    "itic": "No dips or swells recorded in this period.",
}


@pytest.mark.parametrize("case", ["normal", "all_none", "empty"])
def test_every_chart_is_a_drawing_of_the_page_width_that_renders_to_text(case: str, tmp_path: Path) -> None:
    for name, drawing in case_charts(case).items():
        assert isinstance(drawing, Drawing)
        assert drawing.width == pytest.approx(17.0 * cm)
        assert drawing.height == pytest.approx(HEIGHTS[name] * cm)
        text = flat(pdf_text(drawing, tmp_path / f"{name}.pdf"))
        assert flat(TITLES[name]) in text, (name, text)
        note = flat(NOTES[name]) in text
        assert note == (case != "normal"), (name, case, text)


@pytest.mark.skipif(not HAS_CJK_FONT, reason="Debian package fonts-wqy-microhei not installed")
def test_chinese_labels_are_real_text_in_the_embedded_font(tmp_path: Path) -> None:
    drawings = {f"normal-{k}": d for k, d in render_all(chinese).items()}
    drawings |= {f"empty-{k}": d for k, d in case_charts("empty", chinese).items()}
    drawings["none-vqr"] = daily_vqr_chart(_all_none(), 99.5, chinese)
    text = "".join(flat(pdf_text(d, tmp_path / f"{k}.pdf")) for k, d in drawings.items())
    for msgid in (*TITLES.values(), *NOTES.values(), "Qualification rate (%)", "Duration (s)", "Phase A",
                  "Still open at period end", "ITIC upper curve", "Upper limit", "No data"):  # fmt: skip
        assert flat(chinese(msgid)) in text, msgid
    assert "目标99%" in text  # the target's legend entry, formatted
    # Every character drawn has a glyph in the embedded font: no box in place of a word.
    face = pdfmetrics.getFont(pdf.font_name()).face
    drawn = {c for d in drawings.values() for s in charts._strings(d) for c in s if not c.isspace()}
    assert sorted(c for c in drawn if ord(c) not in face.charToGlyph) == []


def strings_of(node: Any) -> list[Any]:
    if isinstance(node, String):
        return [node]
    return [s for child in getattr(node, "contents", ()) for s in strings_of(child)]


def fonts_of(node: Any) -> set[str]:
    own = {node.fontName} if hasattr(node, "fontName") else set()
    return own.union(*(fonts_of(child) for child in getattr(node, "contents", ())))


def test_the_font_defaults_to_the_pdf_font_and_can_be_named() -> None:
    assert fonts_of(itic_chart(DIPS, english)) == {pdf.font_name()}
    assert fonts_of(itic_chart(DIPS, english, font="Helvetica")) == {"Helvetica"}


def test_days_without_a_rate_are_markers_not_bars_of_zero() -> None:
    d = daily_vqr_chart(_daily(), 99.0, english)
    (chart,) = charts._tagged(d, "chart")
    assert chart._ylim == (90.0, 100.5)
    bars = charts._tagged(d, "vqr")
    expected = {n - 1: r["vqr_pct"] for n, r in enumerate(_daily(), start=1) if r["vqr_pct"] is not None}
    assert {b._day: b._value for b in bars} == pytest.approx(expected)
    # Drawn to scale from the plot's floor at 90 %: no bar of 0 hiding among them.
    floor = min(b.y for b in bars)
    per_pct = bars[0].height / (bars[0]._value - 90.0)
    for b in bars:
        assert b.y == pytest.approx(floor) and b.height == pytest.approx((b._value - 90.0) * per_pct)
    markers = charts._tagged(d, "no-data")
    assert sorted(m._day for m in markers) == sorted(n - 1 for n in NONE_DAYS)
    colours = {b.fillColor.hexval() for b in bars}
    assert colours == {"0x2e8b57", "0xc0392b"}  # meets, below the 99 % target
    (target,) = charts._tagged(d, "target")
    assert target._value == 99.0 and target.strokeDashArray


def test_a_day_missing_from_the_list_is_a_marker_too_and_the_axis_zooms_out_for_a_bad_day() -> None:
    daily = [{"day": "2026-11-01", "vqr_pct": 99.0}, {"day": "2026-11-03", "vqr_pct": 80.4}]
    d = daily_vqr_chart(daily, None, english)
    assert len(charts._tagged(d, "vqr")) == 2
    assert [m._day for m in charts._tagged(d, "no-data")] == [1]
    assert charts._tagged(d, "chart")[0]._ylim[0] == 79.0
    assert {b.fillColor.hexval() for b in charts._tagged(d, "vqr")} == {"0x3478c8"}  # no target: neutral


def test_all_none_days_draw_no_bars_and_say_so() -> None:
    d = daily_vqr_chart(_all_none(), 99.0, english)
    assert charts._tagged(d, "vqr") == []
    assert len(charts._tagged(d, "no-data")) == 30
    assert [n.text for n in charts._tagged(d, "note")] == ["No readings in this period."]
    assert [n.text for n in charts._tagged(d, "legend")] == ["Target 99 %", "No data"]


def test_envelope_gaps_stay_gaps() -> None:
    d = envelope_chart(_daily(), PHASES, english)
    gaps = {n - 1 for n in NONE_DAYS}
    lo, hi = charts._tagged(d, "chart")[0]._ylim
    assert lo > 150.0 and hi < 260.0  # the scale is around the readings, not from 0
    for p in "abc":
        points = charts._tagged(d, f"mean-point-{p}")
        assert {pt._day for pt in points} == set(range(30)) - gaps  # unknown, not 0
        assert min(pt._value for pt in points) > 200.0
        for kind in ("mean", "band"):
            runs = charts._tagged(d, f"{kind}-{p}")
            assert runs, kind
            for run in runs:
                # No line or band reaches over a gap day: it would bridge it.
                assert not gaps & set(range(min(run._days), max(run._days) + 1)), (kind, run._days)
            assert {i for run in runs for i in run._days} == set(range(30)) - gaps
    limits = sorted(line._value for k in ("upper", "lower") for line in charts._tagged(d, f"limit-{k}"))
    assert limits == [198.0, 235.4]
    assert all(line.strokeDashArray for k in ("upper", "lower") for line in charts._tagged(d, f"limit-{k}"))
    assert {"198", "235.4"} <= set(charts._strings(d))  # the limits labelled with their value
    labels = [t.text for t in charts._tagged(d, "legend")]
    assert labels == ["Phase A", "Phase B", "Phase C", "Daily min–max", "Upper limit", "Lower limit"]


def test_envelope_shows_a_lone_day_between_gaps() -> None:
    daily = _daily()
    for i in (19, 21):  # 20 and 22 November unknown: the 21st (index 20) is known alone
        daily[i]["phases"]["b"] = {"max_v": None, "min_v": None, "mean_v": None}
    d = envelope_chart(daily, PHASES, english)
    (lone,) = charts._tagged(d, "lone-b")
    assert lone._days == (20,) and lone.height > 0
    assert charts._tagged(d, "lone-a") == []
    # Its mean is a point on its own, in no line.
    assert 20 in {pt._day for pt in charts._tagged(d, "mean-point-b")}
    assert all(20 not in line._days for line in charts._tagged(d, "mean-b"))


def test_envelope_of_nothing_invents_no_scale() -> None:
    d = envelope_chart(_all_none(), {}, english)
    assert charts._tagged(d, "chart")[0]._ylim is None
    assert [n.text for n in charts._tagged(d, "note")] == ["No readings in this period."]
    assert charts._tagged(d, "legend") == []


def test_outage_timeline_spans_colours_and_the_open_end() -> None:
    d = outage_timeline_chart(OUTAGES, START, END, english)
    by_gid = {g: charts._tagged(d, g) for g in ("outage-planned", "outage-unplanned", "outage-open")}
    assert len(by_gid["outage-planned"]) == 1 and len(by_gid["outage-unplanned"]) == 2
    assert by_gid["outage-planned"][0].fillColor != by_gid["outage-unplanned"][0].fillColor
    (open_span,) = by_gid["outage-open"]
    period_end = datetime.fromisoformat(END).timestamp()
    assert open_span._end == period_end and open_span._cause == "unknown"
    left, right = plot_box(d)
    bar = open_span.contents[0]
    assert bar.x + bar.width == pytest.approx(right)  # runs to the period end
    # A one-minute outage is still visible: at least 1/300 of the month wide.
    short = min(by_gid["outage-unplanned"], key=lambda r: r.width)
    assert short._end - short._start == pytest.approx(30 * 86400 / 300)
    assert short.width == pytest.approx((right - left) / 300)
    texts = charts._strings(d)
    lane_labels = [s.text for s in strings_of(d) if s.x < left]  # right-aligned left of the plot, top first
    assert lane_labels == ["Unplanned", "Planned", "Unknown", "cause"]  # the long one on two lines
    legend = [t.text for t in charts._tagged(d, "legend")]
    assert legend == ["Unplanned", "Planned", "Unknown cause", "Still open at period end"]
    assert "11-01" in texts and "12-01" in texts  # ticks in the period's own offset (+08:00)


def test_empty_outage_timeline_keeps_the_axis_and_notes_it() -> None:
    d = outage_timeline_chart([], START, END, chinese)
    assert [t.text for t in charts._tagged(d, "note")] == ["该时段没有停电。"]
    assert charts._tagged(d, "chart")[0]._xlim == (
        datetime.fromisoformat(START).timestamp(),
        datetime.fromisoformat(END).timestamp(),
    )
    assert not {"故障停电", "计划停电", "原因不明"} & set(charts._strings(d))  # no lanes
    assert "11-01" in charts._strings(d)


def test_outage_timeline_refuses_a_period_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="period_start"):
        outage_timeline_chart([], "soon", END, english)
    with pytest.raises(ValueError, match="period_end"):
        outage_timeline_chart([], END, START, english)


def test_itic_draws_the_curves_and_known_points_only() -> None:
    d = itic_chart(DIPS, english)
    for name in ("upper", "lower", "semi"):
        (curve,) = charts._tagged(d, f"curve-{name}")
        assert curve.contents, name
    (dips,) = charts._tagged(d, "dip")
    (swells,) = charts._tagged(d, "swell")
    assert len(dips.contents) == 3 and len(swells.contents) == 1
    (chart,) = charts._tagged(d, "chart")
    assert chart._ylim == (0.0, 220.0)
    assert chart._xlim == (pytest.approx(0.01 / 60), 100.0)
    texts = charts._strings(d)
    assert [t for t in ("0.001", "0.01", "0.1", "1", "10", "100") if t in texts] == [
        "0.001", "0.01", "0.1", "1", "10", "100",
    ]  # fmt: skip
    # Log axis: the decades are evenly spaced.
    left, right = plot_box(d)
    x = [left + (right - left) * (math.log10(t) - math.log10(0.01 / 60)) / (2 - math.log10(0.01 / 60))
         for t in (0.01, 0.1, 1.0)]  # fmt: skip
    assert x[1] - x[0] == pytest.approx(x[2] - x[1])
    legend = [t.text for t in charts._tagged(d, "legend")]
    assert legend == ["ITIC upper curve", "ITIC lower curve", "SEMI F47 curve", "Dips", "Swells"]
    empty = itic_chart([], english)
    assert [t.text for t in charts._tagged(empty, "note")] == ["No dips or swells recorded in this period."]
    assert all(charts._tagged(empty, f"curve-{n}")[0].contents for n in ("upper", "lower", "semi"))


def test_itic_axis_grows_for_a_swell_and_the_curves_stay_inside() -> None:
    d = itic_chart([{"type": "swell", "duration_s": 0.002, "level_pct": 251.0}], english)
    top = charts._tagged(d, "chart")[0]._ylim[1]
    assert top == 270.0
    y_top = d.height - charts.TOP_CM * cm
    for name in ("upper", "lower", "semi"):
        for line in charts._tagged(d, f"curve-{name}")[0].contents:
            assert max(line.points[1::2]) <= y_top + 1e-6  # the 500 % start is cut at the top
    (swell,) = charts._tagged(d, "swell")[0].contents
    assert swell.cy < y_top


def test_no_matplotlib_is_imported() -> None:
    code = (
        "import sys; from reports import pdf; from reports.charts import itic_chart; itic_chart([], str); "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_charts_build_alike_in_threads() -> None:
    def summary(_: int) -> list[list[str]]:
        return [charts._strings(d) for d in render_all(english).values()]

    serial = summary(0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(s == serial for s in pool.map(summary, range(8)))


def test_the_four_charts_are_fast_enough_for_the_archive(capsys: pytest.CaptureFixture[str]) -> None:
    render_all(english)  # font registered, curves cached
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        render_all(chinese)
        times.append(time.perf_counter() - t0)
    with capsys.disabled():
        print(f"\nfour report charts: best {min(times):.4f} s of {[round(t, 4) for t in times]}")
    assert min(times) < 0.3  # loose: catches regressions (they take a few milliseconds)

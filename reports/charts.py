"""The four charts of an account's monthly supply-quality PDF, as ReportLab vector drawings.

Each chart is a ``reportlab.graphics.shapes.Drawing`` built from plain shapes (``Rect``,
``Line``, ``PolyLine``, ``Polygon``, ``String``, ``Group``) on fixed margins, 17 cm wide (the
text width of an A4 page) and 5.5 or 6 cm tall; a Drawing is a platypus Flowable, so the PDF
appends it as it is. Why vector rather than the matplotlib PNGs these charts used to be:

- speed: the four matplotlib charts took 0.43-0.54 s (best of 20) of the 0.62 s a PDF took
  to render (``savefig`` and matplotlib's tick and text layout; a lower dpi changed
  nothing), against a target of 1 s per PDF, report computation included, for an archive of
  1,000. Built from shapes, the four take about 10 ms together (numbers below);
- print: lines and text stay sharp at any zoom or printer resolution, and the PDF carries
  no image data;
- text: every label is real text in the report's embedded font (Chinese included), so it
  can be searched, copied and read by ``pdftotext`` like the rest of the report.

Every visible text comes through the caller's ``gettext`` (English msgids, the Chinese
catalog for Chinese reports) and is drawn in ``font``, the name ``reports.pdf.font_name()``
registered (the embedded WenQuanYi subset, or the STSong-Light fallback); the default calls
it, so a chart can be built without the rest of the PDF.

Inputs are the report JSON's plain dicts; ``None`` means unknown and is never drawn as 0:
a day without a rate is a hatched grey "no data" marker, a gap in a voltage stays a gap.
Shapes a reader of the chart relies on carry a ``_gid`` (the tests find them with
``_tagged``), e.g. ``"vqr"`` bars with their ``_day`` and ``_value``.

Speed, measured in the development container (2 shared vCPUs on which a 10**7-step Python
loop takes about 1.1 s) on a real month's report (30 days, three phases, three outages,
three dips), old and new code side by side: the four charts 430-540 ms with matplotlib,
9.6-10.9 ms as drawings (best of 20); ``reports.pdf.render`` 0.62 s -> 0.065 s (best of 10;
medians 0.91-0.98 s -> 0.07-0.09 s), the PDF 182 kB -> 75 kB. Nothing here is cached but
the ITIC and SEMI curves' vertices, the same in every report.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, TypeVar

import numpy as np
from reportlab.graphics.shapes import (
    Circle,
    Drawing,
    Group,
    Hatching,
    Line,
    Polygon,
    PolyLine,
    Rect,
    String,
)
from reportlab.lib import colors
from reportlab.lib.units import cm
from reportlab.pdfbase.pdfmetrics import stringWidth

from analysis.curves import ITIC_FIRST_S, itic_lower_pct, itic_upper_pct, semi_f47_required_pct
from analysis.qualification import COMPARE_DECIMALS

__all__ = [
    "daily_vqr_chart",
    "envelope_chart",
    "itic_chart",
    "outage_timeline_chart",
]

Gettext = Callable[[str], str]
Row = Mapping[str, Any]
_T = TypeVar("_T")
_S = TypeVar("_S")

WIDTH_CM = 17.0  # A4 width less 2 cm margins each side
HEIGHT_CM = 5.5
TALL_HEIGHT_CM = 6.0  # the envelope and ITIC charts carry more legend entries
LEFT_CM = 1.6  # y label and tick labels up to six digits (110 kV in volts)
RIGHT_CM = 3.8  # the legend
TOP_CM = 0.6  # the title
BOTTOM_CM = 0.7  # x tick labels
XLABEL_BOTTOM_CM = 0.85  # x tick labels and an x axis label (the ITIC chart)
TEXT_PT = 7.0
SMALL_PT = 6.5
TITLE_PT = 8.0
MIN_TEXT_PT = 5.0  # a legend entry too long for the margin shrinks, down to this
TICK_PT = 2.5  # tick mark length
LEGEND_ROW_PT = 9.0
SWATCH_PT = 11.5


def N_(text: str) -> str:  # noqa: N802  (gettext's name for it)
    """Marks a msgid for ``pybabel extract`` where it is defined; it is translated where drawn."""
    return text


PHASE_ORDER = ("a", "b", "c", "ab", "bc", "ca")
PHASE_LABELS = {
    "a": N_("Phase A"),
    "b": N_("Phase B"),
    "c": N_("Phase C"),
    "ab": N_("Line AB"),
    "bc": N_("Line BC"),
    "ca": N_("Line CA"),
}
# Yellow, green, red: the A/B/C colours of Chinese switchgear, as the dashboard uses them.
PHASE_COLOURS = {
    "a": "#d4a017",
    "b": "#2e8b57",
    "c": "#c0392b",
    "ab": "#d4a017",
    "bc": "#2e8b57",
    "ca": "#c0392b",
}
OTHER_PHASE_COLOUR = "#555555"
MEETS_COLOUR = "#2e8b57"
BELOW_COLOUR = "#c0392b"
NEUTRAL_COLOUR = "#3478c8"
NO_DATA_FACE = "#f0f0f0"
NO_DATA_EDGE = "#9a9a9a"
LIMIT_COLOUR = "#333333"
CAUSE_ORDER = ("unplanned", "planned", "unknown")  # top to bottom
CAUSE_LABELS = {"unplanned": N_("Unplanned"), "planned": N_("Planned"), "unknown": N_("Unknown cause")}
CAUSE_COLOURS = {"unplanned": "#c0392b", "planned": "#3478c8", "unknown": "#8a8a8a"}
OPEN_LEGEND_COLOUR = "#777777"
DIP_COLOUR = "#c0392b"
SWELL_COLOUR = "#d4a017"
CURVE_COLOUR = "#444444"
SEMI_COLOUR = "#3478c8"
AXIS_COLOUR = "#333333"
GRID_COLOUR = "#dddddd"
TEXT_COLOUR = "#222222"
NOTE_COLOUR = "#555555"
BAND_LEGEND_COLOUR = "#999999"

VQR_TOP_PCT = 100.5
VQR_FLOOR_PCT = 90.0
ITIC_LAST_S = 100.0
ITIC_TOP_PCT = 220.0
MIN_SPAN_FRACTION = 1.0 / 300.0  # a one-minute outage in a month would be invisible
BAR_WIDTH = 0.7  # of a day's slot
BAND_OPACITY = 0.2
LONE_OPACITY = 0.35
# Dash patterns in points (matplotlib's were in line widths of 0.9 pt).
TARGET_DASH = [3.6, 1.8]
UPPER_DASH = [4.5, 1.8]
LOWER_DASH = [1.4, 1.4]
SEMI_DASH = [4.5, 1.8]


# -- plumbing --------------------------------------------------------------------------------
@functools.cache
def _colour(hex_code: str) -> colors.Color:
    return colors.HexColor(hex_code)


def _default_font() -> str:
    """The PDF's font; imported here, not at the top: reports.pdf imports this module."""
    from reports.pdf import font_name

    return font_name()


def _tag(shape: _S, gid: str, **data: Any) -> _S:
    """Marks a shape for tests and readers of the structure; ReportLab lets ``_`` names through.
    The drawing itself is tagged ``"chart"``, with the data limits of its axes."""
    shape._gid = gid  # type: ignore[attr-defined]
    for key, value in data.items():
        setattr(shape, f"_{key}", value)
    return shape


def _tagged(node: Any, gid: str) -> list[Any]:
    """Every shape under ``node`` tagged ``gid``, in drawing order."""
    found = [node] if getattr(node, "_gid", None) == gid else []
    for child in getattr(node, "contents", ()):
        found.extend(_tagged(child, gid))
    return found


def _strings(node: Any) -> list[str]:
    """Every text under ``node``, in drawing order."""
    if isinstance(node, String):
        return [node.text]
    return [t for child in getattr(node, "contents", ()) for t in _strings(child)]


class _Linear:
    """Data to drawing coordinates, on a linear scale."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float) -> None:
        self.lo, self.p0 = lo, p0
        self.k = (p1 - p0) / (hi - lo) if hi != lo else 0.0

    def __call__(self, v: float) -> float:
        return self.p0 + (v - self.lo) * self.k


class _Log10:
    """Data to drawing coordinates, on a log10 scale (positive values only)."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float) -> None:
        self.lo, self.p0 = math.log10(lo), p0
        self.k = (p1 - p0) / (math.log10(hi) - self.lo)

    def __call__(self, v: float) -> float:
        return self.p0 + (math.log10(v) - self.lo) * self.k


def _nice_ticks(lo: float, hi: float, target: int = 6) -> tuple[list[float], float]:
    """Round tick values (1, 2 or 5 times a power of ten) within [lo, hi], and the step."""
    span = hi - lo
    if not (span > 0 and math.isfinite(span)):
        return [lo], 1.0
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next((m * magnitude for m in (1.0, 2.0, 5.0) if m * magnitude >= raw * 0.999), 10 * magnitude)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, 10))
        k += 1
    return ticks, step


def _tick_text(value: float, step: float) -> str:
    """Tick labels with the decimals the step needs and no more: 90, 92.5, 0.25."""
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > abs(step) * 1e-9:
        decimals += 1
    return f"{value:.{decimals}f}"


def _fit(text: str, font: str, size: float, width: float) -> float:
    """The font size at which ``text`` fits ``width``: ``size``, or smaller down to MIN_TEXT_PT."""
    w = stringWidth(text, font, size)
    return size if w <= width else max(MIN_TEXT_PT, size * width / w)


class _Chart:
    """One drawing with its plot box on fixed margins, and the chart furniture around it.

    Fixed margins rather than a layout pass: the plot areas of the four charts line up down
    the page, and the right margin holds the legend.
    """

    def __init__(self, font: str, height_cm: float, *, bottom_cm: float = BOTTOM_CM) -> None:
        self.font = font
        self.drawing = Drawing(WIDTH_CM * cm, height_cm * cm)
        self.x0 = LEFT_CM * cm
        self.x1 = (WIDTH_CM - RIGHT_CM) * cm
        self.y0 = bottom_cm * cm
        self.y1 = (height_cm - TOP_CM) * cm
        self.layers = {name: Group() for name in ("grid", "data", "over", "axes", "text")}
        for layer in self.layers.values():
            self.drawing.add(layer)

    def add(self, layer: str, shape: Any) -> Any:
        self.layers[layer].add(shape)
        return shape

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float = SMALL_PT,
        *,
        anchor: str = "start",
        colour: str = TEXT_COLOUR,
        layer: str = "text",
    ) -> String:
        s = String(
            x, y, text, fontName=self.font, fontSize=size, fillColor=_colour(colour), textAnchor=anchor
        )
        return self.add(layer, s)  # type: ignore[no-any-return]

    # -- axes ----------------------------------------------------------------------------------
    def frame(self) -> None:
        """The left and bottom spines; top and right are left off (less ink, as the PNG charts had it)."""
        ink = _colour(AXIS_COLOUR)
        self.add("axes", Line(self.x0, self.y0, self.x1, self.y0, strokeColor=ink, strokeWidth=0.6))
        self.add("axes", Line(self.x0, self.y0, self.x0, self.y1, strokeColor=ink, strokeWidth=0.6))

    def yticks(self, ticks: Iterable[tuple[float, str]], *, grid: bool = True, ylabel: bool = True) -> None:
        """Ticks at drawing heights with their labels (room left for a y label unless told), and
        light grid lines across the plot."""
        room = self.x0 - TICK_PT - 3.0 - (10.0 if ylabel else 0.0)
        ink, light = _colour(AXIS_COLOUR), _colour(GRID_COLOUR)
        for y, label in ticks:
            if grid:
                self.add("grid", Line(self.x0, y, self.x1, y, strokeColor=light, strokeWidth=0.5))
            self.add("axes", Line(self.x0 - TICK_PT, y, self.x0, y, strokeColor=ink, strokeWidth=0.5))
            lines = [label]
            if stringWidth(label, self.font, SMALL_PT) > room and " " in label:
                # Two lines rather than a smaller font ("Unknown cause" beside an outage lane).
                words = label.split(" ")
                cut = min(range(1, len(words)), key=lambda k: abs(len(" ".join(words[:k])) - len(label) / 2))
                lines = [" ".join(words[:cut]), " ".join(words[cut:])]
            size = min(_fit(line, self.font, SMALL_PT, room) for line in lines)
            first = y - size * 0.35 + (len(lines) - 1) * size * 0.55
            for n, line in enumerate(lines):
                self.text(self.x0 - TICK_PT - 1.5, first - n * size * 1.1, line, size, anchor="end")

    def xticks(self, ticks: Iterable[tuple[float, str]], *, grid: bool = False) -> None:
        ink, light = _colour(AXIS_COLOUR), _colour(GRID_COLOUR)
        for x, label in ticks:
            if grid:
                self.add("grid", Line(x, self.y0, x, self.y1, strokeColor=light, strokeWidth=0.5))
            self.add("axes", Line(x, self.y0 - TICK_PT, x, self.y0, strokeColor=ink, strokeWidth=0.5))
            self.text(x, self.y0 - TICK_PT - 1.5 - SMALL_PT * 0.75, label, SMALL_PT, anchor="middle")

    def title(self, text: str) -> None:
        # WenQuanYi has no bold face, so size alone marks the title.
        self.text(self.x0, self.y1 + 5.0, text, TITLE_PT, colour="#000000")

    def ylabel(self, text: str) -> None:
        """Rotated a quarter turn, centred on the plot's height at the drawing's left edge."""
        size = _fit(text, self.font, TEXT_PT, self.y1 - self.y0)
        label = String(
            0, 0, text, fontName=self.font, fontSize=size, fillColor=_colour(TEXT_COLOUR), textAnchor="middle"
        )
        self.add("text", Group(label, transform=(0, 1, -1, 0, size * 0.95, (self.y0 + self.y1) / 2)))

    def xlabel(self, text: str) -> None:
        self.text((self.x0 + self.x1) / 2, 2.0 + TEXT_PT * 0.2, text, TEXT_PT, anchor="middle")

    def note(self, text: str, fx: float = 0.5, fy: float = 0.5) -> None:
        """A remark centred at a fraction of the plot box, on white so it reads over hatching."""
        x = self.x0 + fx * (self.x1 - self.x0)
        y = self.y0 + fy * (self.y1 - self.y0)
        size = _fit(text, self.font, TEXT_PT, (self.x1 - self.x0) - 8.0)
        w = stringWidth(text, self.font, size)
        self.add(
            "text",
            Rect(
                x - w / 2 - 2.5,
                y - size * 0.55,
                w + 5.0,
                size * 1.4,
                fillColor=colors.white,
                strokeColor=None,
            ),
        )
        _tag(self.text(x, y - size * 0.3, text, size, anchor="middle", colour=NOTE_COLOUR), "note")

    # -- legend ---------------------------------------------------------------------------------
    def legend(self, entries: Sequence[tuple[str, Callable[[float, float], list[Any]]]]) -> None:
        """Right of the plot, from its top: a swatch (drawn by the entry's function) and a label."""
        x = self.x1 + 5.0
        room = self.drawing.width - (x + SWATCH_PT + 4.0) - 2.0
        for row, (label, swatch) in enumerate(entries):
            y = self.y1 - LEGEND_ROW_PT * row - LEGEND_ROW_PT / 2  # the row's middle
            for shape in swatch(x, y):
                self.add("text", shape)
            size = _fit(label, self.font, SMALL_PT, room)
            _tag(self.text(x + SWATCH_PT + 4.0, y - size * 0.35, label, size), "legend")


def _patch(fill: str, *, opacity: float | None = None, hatch: str | None = None) -> Callable[..., list[Any]]:
    def draw(x: float, y: float) -> list[Any]:
        box = Rect(x, y - 2.8, SWATCH_PT, 5.6, fillColor=_colour(fill), strokeColor=None, fillOpacity=opacity)
        out: list[Any] = [box]
        if hatch:
            out.append(_hatch(x, y - 2.8, SWATCH_PT, 5.6, hatch))
        return out

    return draw


def _line(colour: str, *, dash: list[float] | None = None, marker: bool = False) -> Callable[..., list[Any]]:
    def draw(x: float, y: float) -> list[Any]:
        out: list[Any] = [
            Line(x, y, x + SWATCH_PT, y, strokeColor=_colour(colour), strokeWidth=1.0, strokeDashArray=dash)
        ]
        if marker:
            out.append(_dot(x + SWATCH_PT / 2, y, 1.5, colour))
        return out

    return draw


def _marker(colour: str) -> Callable[..., list[Any]]:
    return lambda x, y: [_dot(x + SWATCH_PT / 2, y, 1.8, colour, opacity=0.8)]


def _dot(x: float, y: float, r: float, colour: str, *, opacity: float | None = None) -> Circle:
    return Circle(x, y, r, fillColor=_colour(colour), strokeColor=None, fillOpacity=opacity)


def _hatch(x: float, y: float, w: float, h: float, colour: str, *, spacing: float = 2.2) -> Hatching:
    """Diagonal lines ("////") across a rectangle; aligned to the page, so neighbours match."""
    return Hatching(
        spacings=spacing,
        angles=45,
        xyLists=[x, y, x + w, y, x + w, y + h, x, y + h],
        strokeColor=_colour(colour),
        strokeWidth=0.45,
        fillColor=None,
    )


# -- input parsing ---------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    """A finite float, else None: unknown stays unknown (bools and NaN included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _days(daily: Iterable[Row]) -> tuple[list[date], dict[date, Row]]:
    """Every calendar day from the first to the last in ``daily``; days absent from the list
    are as unknown as days with None, so they get a slot (and a gap or marker) too."""
    rows: dict[date, Row] = {}
    for row in daily:
        d = _day(row.get("day"))
        if d is not None:
            rows[d] = row
    if not rows:
        return [], {}
    first, last = min(rows), max(rows)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)], rows


def _day_scale(chart: _Chart, n: int) -> _Linear:
    """Day slots at integer positions, with a little room before the first and after the last."""
    if not n:
        return _Linear(-0.5, 0.5, chart.x0, chart.x1)
    return _Linear(-0.6, n - 0.4, chart.x0, chart.x1)


def _day_axis(chart: _Chart, days: Sequence[date], x: _Linear) -> None:
    """The day of month under each day when the days are one month (the report's case), else mm-dd."""
    n = len(days)
    if not n:
        return
    if len({(d.year, d.month) for d in days}) == 1:
        step, labels = 1, [str(d.day) for d in days]
    else:
        step, labels = max(1, math.ceil(n / 12)), [d.strftime("%m-%d") for d in days]
    chart.xticks((x(i), labels[i]) for i in range(0, n, step))


def _time(value: Any, tz: tzinfo | None) -> datetime | None:
    """An ISO-8601 time; one without an offset is taken to be in the period's offset."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if t.tzinfo is None and tz is not None:
        t = t.replace(tzinfo=tz)
    return t


# -- daily voltage qualification rate --------------------------------------------------------
def daily_vqr_chart(
    daily: Sequence[Row], target_pct: float | None, gettext: Gettext, *, font: str | None = None
) -> Drawing:
    """Bars of each day's voltage qualification rate, the target as a dashed line.

    ``daily``: ``{"day": "2026-11-01", "vqr_pct": 99.2 | None, ...}``. A day without a rate
    (or missing from the list between two that are in it) is a hatched grey marker, not a
    bar of 0, which would read as a day of total failure. The y axis starts at 90 % or 1
    point under the lowest day (or the target), so differences between 99 % and 100 % stay
    visible. Bars are tagged ``"vqr"`` (with ``_day`` and ``_value``), markers ``"no-data"``.
    """
    chart = _Chart(font or _default_font(), HEIGHT_CM)
    days, rows = _days(daily)
    values = [_number(rows[d].get("vqr_pct")) if d in rows else None for d in days]
    target = _number(target_pct)
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    missing = [i for i, v in enumerate(values) if v is None]

    bottom = VQR_FLOOR_PCT
    if known:
        bottom = min(bottom, math.floor(min(v for _, v in known) - 1.0))
    if target is not None:
        bottom = min(bottom, math.floor(target - 1.0))
    bottom = max(0.0, bottom)
    x = _day_scale(chart, len(days))
    y = _Linear(bottom, VQR_TOP_PCT, chart.y0, chart.y1)
    ticks, step = _nice_ticks(bottom, VQR_TOP_PCT)
    chart.yticks((y(t), _tick_text(t, step)) for t in ticks)
    half = x.k * BAR_WIDTH / 2

    entries: list[tuple[str, Callable[..., list[Any]]]] = []
    below = [
        target is not None and round(v, COMPARE_DECIMALS) < round(target, COMPARE_DECIMALS) for _, v in known
    ]
    for (i, v), low in zip(known, below, strict=True):
        colour = NEUTRAL_COLOUR if target is None else BELOW_COLOUR if low else MEETS_COLOUR
        top = y(min(v, VQR_TOP_PCT))
        bar = Rect(
            x(i) - half, chart.y0, 2 * half, top - chart.y0, fillColor=_colour(colour), strokeColor=None
        )
        chart.add("data", _tag(bar, "vqr", day=i, value=v))
    for i in missing:
        marker = Group(
            Rect(
                x(i) - half,
                chart.y0,
                2 * half,
                chart.y1 - chart.y0,
                fillColor=_colour(NO_DATA_FACE),
                strokeColor=None,
            ),
            _hatch(x(i) - half, chart.y0, 2 * half, chart.y1 - chart.y0, NO_DATA_EDGE),
        )
        chart.add("data", _tag(marker, "no-data", day=i))
    if target is not None:
        dash = Line(
            chart.x0,
            y(target),
            chart.x1,
            y(target),
            strokeColor=_colour(LIMIT_COLOUR),
            strokeWidth=0.9,
            strokeDashArray=TARGET_DASH,
        )
        chart.add("over", _tag(dash, "target", value=target))
        if known:
            entries.append((gettext("Meets target"), _patch(MEETS_COLOUR)))
            if any(below):
                entries.append((gettext("Below target"), _patch(BELOW_COLOUR)))
        label = gettext("Target %(pct)s %%") % {"pct": f"{target:g}"}
        entries.append((label, _line(LIMIT_COLOUR, dash=TARGET_DASH)))
    if missing:
        entries.append((gettext("No data"), _patch(NO_DATA_FACE, hatch=NO_DATA_EDGE)))
    if not known:
        chart.note(gettext("No readings in this period."))

    chart.frame()
    _day_axis(chart, days, x)
    chart.title(gettext("Daily voltage qualification rate"))
    chart.ylabel(gettext("Qualification rate (%)"))
    chart.legend(entries)
    return _tag(
        chart.drawing,
        "chart",
        xlim=(-0.6, len(days) - 0.4) if days else (-0.5, 0.5),
        ylim=(bottom, VQR_TOP_PCT),
    )


# -- daily voltage envelope ------------------------------------------------------------------
def _phase_keys(phases: Mapping[str, Any], rows: Mapping[date, Row]) -> list[str]:
    seen = set(phases)
    for row in rows.values():
        seen.update((row.get("phases") or {}).keys())
    return [p for p in PHASE_ORDER if p in seen] + sorted(seen - set(PHASE_ORDER))


def _series(days: Sequence[date], rows: Mapping[date, Row], phase: str, field: str) -> list[float | None]:
    """One phase's daily values, None where unknown."""
    out: list[float | None] = []
    for d in days:
        row = rows.get(d)
        stats = ((row.get("phases") or {}).get(phase) or {}) if row is not None else {}
        out.append(_number(stats.get(field)))
    return out


def _runs(values: Sequence[_T | None]) -> list[list[tuple[int, _T]]]:
    """Maximal runs of known days as (index, value) lists: an unknown day splits them."""
    out: list[list[tuple[int, _T]]] = []
    current: list[tuple[int, _T]] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                out.append(current)
            current = []
        else:
            current.append((i, v))
    if current:
        out.append(current)
    return out


def envelope_chart(
    daily: Sequence[Row],
    phases: Mapping[str, Mapping[str, Any]],
    gettext: Gettext,
    *,
    font: str | None = None,
) -> Drawing:
    """Each phase's daily min–max band and mean line between the dashed limit lines.

    ``daily[i]["phases"][p]``: ``{"max_v", "min_v", "mean_v"}`` (None when unknown);
    ``phases[p]``: ``{"nominal_v", "lower_v", "upper_v"}``. Unknown days stay gaps: a line
    drawn across them would claim readings the meter never sent, so bands (``"band-<p>"``,
    with the ``_days`` they span) and mean lines (``"mean-<p>"``) are split at every gap, and
    a day known alone between unknown ones is a short bar (``"lone-<p>"``). Limit lines carry
    their value at the right edge, since phase and line voltages may have different limits.
    """
    chart = _Chart(font or _default_font(), TALL_HEIGHT_CM)
    days, rows = _days(daily)
    keys = _phase_keys(phases, rows)
    data = {
        key: (
            _series(days, rows, key, "min_v"),
            _series(days, rows, key, "max_v"),
            _series(days, rows, key, "mean_v"),
        )
        for key in keys
    }
    limits = {
        "upper": sorted({v for p in phases.values() if (v := _number(p.get("upper_v"))) is not None}),
        "lower": sorted({v for p in phases.values() if (v := _number(p.get("lower_v"))) is not None}),
    }
    known_values = [v for series in data.values() for s in series for v in s if v is not None]
    scale_values = known_values + limits["upper"] + limits["lower"]
    if scale_values:
        lo, hi = min(scale_values), max(scale_values)
        if hi - lo < 1e-9:
            lo, hi = lo - 1.0, hi + 1.0
        pad = (hi - lo) * 0.12
        lo, hi = lo - pad, hi + pad
        ticks, step = _nice_ticks(lo, hi)
    else:
        lo, hi, ticks, step = 0.0, 1.0, [], 1.0  # no values at all: a scale around 0 V would be invented
    x = _day_scale(chart, len(days))
    y = _Linear(lo, hi, chart.y0, chart.y1)
    chart.yticks((y(t), _tick_text(t, step)) for t in ticks)

    entries: list[tuple[str, Callable[..., list[Any]]]] = []
    any_data = False
    bands, lines = Group(), Group()
    for key in keys:
        colour = PHASE_COLOURS.get(key, OTHER_PHASE_COLOUR)
        fill = _colour(colour)
        label = gettext(PHASE_LABELS[key]) if key in PHASE_LABELS else gettext(key.upper())
        low, high, mean = data[key]
        band = [
            (lo, hi) if lo is not None and hi is not None else None for lo, hi in zip(low, high, strict=True)
        ]
        band_runs = _runs(band)
        for run in band_runs:
            if len(run) == 1:  # known alone: no area, so a short bar shows it
                ((i, (lo, hi)),) = run
                lone = Rect(
                    x(i) - 1.5,
                    y(lo),
                    3.0,
                    y(hi) - y(lo),
                    fillColor=fill,
                    strokeColor=None,
                    fillOpacity=LONE_OPACITY,
                )
                bands.add(_tag(lone, f"lone-{key}", days=(i,)))
                continue
            outline = [(x(i), y(hi)) for i, (_lo, hi) in run] + [
                (x(i), y(lo)) for i, (lo, _hi) in reversed(run)
            ]
            polygon = Polygon(
                [c for p in outline for c in p], fillColor=fill, strokeColor=None, fillOpacity=BAND_OPACITY
            )
            bands.add(_tag(polygon, f"band-{key}", days=tuple(i for i, _ in run)))
        mean_runs = _runs(mean)
        for mean_run in mean_runs:
            for i, v in mean_run:
                lines.add(_tag(_dot(x(i), y(v), 0.9, colour), f"mean-point-{key}", day=i, value=v))
            if len(mean_run) > 1:
                points = [c for i, v in mean_run for c in (x(i), y(v))]
                line = PolyLine(points, strokeColor=fill, strokeWidth=1.1, strokeLineJoin=1)
                lines.add(_tag(line, f"mean-{key}", days=tuple(i for i, _ in mean_run)))
        if band_runs or mean_runs:
            any_data = True
            entries.append((label, _line(colour, marker=True)))
    chart.add("data", bands)
    chart.add("data", lines)
    if any_data:
        entries.append((gettext("Daily min–max"), _patch(BAND_LEGEND_COLOUR, opacity=0.3)))

    names = {"upper": gettext("Upper limit"), "lower": gettext("Lower limit")}
    dashes = {"upper": UPPER_DASH, "lower": LOWER_DASH}
    for kind in ("upper", "lower"):
        for v in limits[kind]:
            ink = _colour(LIMIT_COLOUR)
            line = Line(
                chart.x0, y(v), chart.x1, y(v), strokeColor=ink, strokeWidth=0.9, strokeDashArray=dashes[kind]
            )
            chart.add("over", _tag(line, f"limit-{kind}", value=v))
            # The value at the right end, just outside the band between the limits.
            size = SMALL_PT - 0.5
            ty = y(v) + 1.8 if kind == "upper" else y(v) - 1.8 - size * 0.75
            chart.text(chart.x1 - 1.0, ty, f"{v:g}", size, anchor="end", colour=LIMIT_COLOUR, layer="over")
        if limits[kind]:
            entries.append((names[kind], _line(LIMIT_COLOUR, dash=dashes[kind])))
    if not any_data:
        chart.note(gettext("No readings in this period."))

    chart.frame()
    _day_axis(chart, days, x)
    chart.title(gettext("Daily voltage: mean and min–max band"))
    chart.ylabel(gettext("Voltage (V)"))
    chart.legend(entries)
    return _tag(chart.drawing, "chart", ylim=(lo, hi) if scale_values else None)


# -- outage timeline -------------------------------------------------------------------------
def _time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Local midnights every few days (mm-dd) for a month; every few hours (dd HH:MM) for two days or less."""
    tz = start.tzinfo
    span = end - start
    if span > timedelta(days=2):
        days = span / timedelta(days=1)
        every = next((k for k in (1, 2, 3, 4, 5, 7, 10, 14, 28) if days / k <= 11), 28)
        t = datetime(start.year, start.month, start.day, tzinfo=tz)
        out: list[tuple[datetime, str]] = []
        while t <= end:
            # Days 1, 1+k, 1+2k ... of each month, as a calendar reads; never two ticks crowded.
            crowded = bool(out) and t - out[-1][0] < timedelta(days=every * 0.6)
            if t >= start and (t.day - 1) % every == 0 and not crowded:
                out.append((t, t.strftime("%m-%d")))
            t += timedelta(days=1)  # the period's fixed offset: every day is 24 h
        return out
    hours = span / timedelta(hours=1)
    every = next((k for k in (1, 2, 3, 4, 6, 12) if hours / k <= 11), 12)
    t = start.replace(minute=0, second=0, microsecond=0)
    out = []
    while t <= end:
        if t >= start and t.hour % every == 0:
            out.append((t, t.strftime("%d %H:%M")))
        t += timedelta(hours=1)
    return out


def outage_timeline_chart(
    outages: Sequence[Row],
    period_start: str,
    period_end: str,
    gettext: Gettext,
    *,
    font: str | None = None,
) -> Drawing:
    """Outages as spans on the period's time axis, one lane and colour per cause.

    ``outages``: ``{"start", "end" | None, "duration_s", "cause", "length", "open"}``; an open
    outage runs to ``period_end`` and is hatched, since its end is not known yet. Spans are
    clipped to the period and drawn at least 1/300 of it wide: a one-minute outage is a
    hair in a month, but the reader must see that it happened. Ticks are in the offset of
    ``period_start`` (the account's local time). Spans are tagged ``"outage-<cause>"``, open
    ones ``"outage-open"``; with no outage the empty axis carries a note.
    """
    chart = _Chart(font or _default_font(), HEIGHT_CM)
    start = _time(period_start, None)
    if start is None:
        raise ValueError(f"period_start is not an ISO-8601 time: {period_start!r}")
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    tz = start.tzinfo
    end = _time(period_end, tz)
    if end is None or end <= start:
        raise ValueError(f"period_end is not an ISO-8601 time after period_start: {period_end!r}")
    t0, t1 = start.timestamp(), end.timestamp()
    x = _Linear(t0, t1, chart.x0, chart.x1)
    min_width = (t1 - t0) * MIN_SPAN_FRACTION

    spans: dict[str, list[tuple[float, float, bool]]] = {}
    for o in outages:
        s = _time(o.get("start"), tz)
        if s is None:
            continue
        e = None if o.get("open") else _time(o.get("end"), tz)
        left = max(s.timestamp(), t0)
        right = min(t1 if e is None else e.timestamp(), t1)
        if left > t1 or right < t0:
            continue  # wholly outside the period
        cause = str(o.get("cause") or "unknown")
        width = max(right - left, min_width)
        left = min(left, t1 - width)  # a short outage at the very end stays inside the axis
        spans.setdefault(cause if cause in CAUSE_COLOURS else "unknown", []).append((left, width, e is None))

    lanes = [c for c in CAUSE_ORDER if c in spans]
    entries: list[tuple[str, Callable[..., list[Any]]]] = []
    any_open = False
    if lanes:
        lane_h = (chart.y1 - chart.y0) / (len(lanes) + 0.2)  # first lane on top
        bar_h = min(0.55 * lane_h, 16.0)
        for lane, cause in enumerate(lanes):
            colour = CAUSE_COLOURS[cause]
            centre = chart.y1 - (lane + 0.6) * lane_h
            for left, width, is_open in spans[cause]:
                x_left, x_right = x(left), x(left + width)
                bar = Rect(
                    x_left,
                    centre - bar_h / 2,
                    x_right - x_left,
                    bar_h,
                    fillColor=_colour(colour),
                    strokeColor=None,
                )
                if is_open:
                    any_open = True
                    hatch = _hatch(x_left, centre - bar_h / 2, x_right - x_left, bar_h, "#ffffff")
                    chart.add(
                        "data",
                        _tag(Group(bar, hatch), "outage-open", cause=cause, start=left, end=left + width),
                    )
                else:
                    chart.add("data", _tag(bar, f"outage-{cause}", start=left, end=left + width))
            entries.append((gettext(CAUSE_LABELS[cause]), _patch(colour)))
        chart.yticks(
            ((chart.y1 - (lane + 0.6) * lane_h, gettext(CAUSE_LABELS[c])) for lane, c in enumerate(lanes)),
            grid=False,
            ylabel=False,
        )
        if any_open:
            entries.append((gettext("Still open at period end"), _patch(OPEN_LEGEND_COLOUR, hatch="#ffffff")))
    else:
        chart.note(gettext("No outages in this period."))

    chart.frame()
    chart.xticks(((x(t.timestamp()), label) for t, label in _time_ticks(start, end)), grid=bool(lanes))
    chart.title(gettext("Outage timeline"))
    chart.legend(entries)
    return _tag(chart.drawing, "chart", xlim=(t0, t1))


# -- ITIC / SEMI F47 -------------------------------------------------------------------------
def _simplified(t: np.ndarray, v: np.ndarray) -> list[tuple[float, float]]:
    """Curve vertices without the middle points of flat runs, NaN (no curve) left out."""
    keep = ~np.isnan(v)
    t, v = t[keep], v[keep]
    if len(t) < 3:
        return list(zip(t.tolist(), v.tolist(), strict=True))
    flat = np.zeros(len(v), dtype=bool)
    flat[1:-1] = (v[1:-1] == v[:-2]) & (v[1:-1] == v[2:])
    return list(zip(t[~flat].tolist(), v[~flat].tolist(), strict=True))


@functools.cache
def _itic_curves() -> tuple[tuple[tuple[float, float], ...], ...]:
    """Curve vertices (duration s, %) as the dashboard draws them: a log grid plus both sides of
    every step, flat runs reduced to their ends. Computed once: the curves are the same in
    every report."""
    grid = np.logspace(math.log10(ITIC_FIRST_S), math.log10(ITIC_LAST_S), 400)
    steps = np.array([0.001, 0.003, 0.02, 0.5, 10.0])
    t = np.unique(np.concatenate([grid, steps, steps * 1.0000001]))
    semi_t = t[(t >= 0.05) & (t <= 1.0)]
    return (
        tuple(_simplified(t, itic_upper_pct(t))),
        tuple(_simplified(t, itic_lower_pct(t))),
        tuple(_simplified(semi_t, semi_f47_required_pct(semi_t))),
    )


def _clipped(points: Iterable[tuple[float, float]], top: float) -> list[list[tuple[float, float]]]:
    """A polyline cut where it leaves the plot above ``top``: the pieces inside, with the crossings."""
    pieces: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    prev: tuple[float, float] | None = None
    for p in points:
        if prev is not None and (prev[1] > top) != (p[1] > top):
            f = (top - prev[1]) / (p[1] - prev[1])
            crossing = (prev[0] + f * (p[0] - prev[0]), top)
            if p[1] > top:  # leaving
                current.append(crossing)
                pieces.append(current)
                current = []
            else:
                current = [crossing]
        if p[1] <= top:
            current.append(p)
        prev = p
    if len(current) > 1:
        pieces.append(current)
    return [piece for piece in pieces if len(piece) > 1]


def itic_chart(dips: Sequence[Row], gettext: Gettext, *, font: str | None = None) -> Drawing:
    """Dips and swells (level in % of nominal against duration, log axis) on the ITIC and SEMI F47 curves.

    ``dips``: ``{"type": "dip" | "swell", "duration_s", "level_pct"}``; the curves come from
    ``analysis.curves``, the same functions that classify the events, so the picture and the
    report's counts cannot disagree. The x axis runs from 0.01 cycle to 100 s (wider for an
    event outside), decades ticked; the y axis from 0 to 220 %, higher if a swell would
    otherwise be hidden. An event without a duration or level has no honest place and is
    left out. An empty list draws the curves with a note. Curves are tagged
    ``"curve-upper"``, ``"curve-lower"``, ``"curve-semi"``; points ``"dip"`` and ``"swell"``.
    """
    chart = _Chart(font or _default_font(), TALL_HEIGHT_CM, bottom_cm=XLABEL_BOTTOM_CM)
    points: dict[str, list[tuple[float, float]]] = {"dip": [], "swell": []}
    for event in dips:
        d, level = _number(event.get("duration_s")), _number(event.get("level_pct"))
        kind = event.get("type")
        if d is None or level is None or d <= 0 or level < 0 or kind not in points:
            continue
        points[kind].append((d, level))
    everything = points["dip"] + points["swell"]
    left = min([ITIC_FIRST_S] + [d for d, _ in everything])
    right = max([ITIC_LAST_S] + [d * 1.5 for d, _ in everything])
    # Never hide a swell above the usual 220 %: the axis grows to it.
    top = max([ITIC_TOP_PCT] + [math.ceil(v / 10.0) * 10.0 + 10.0 for _, v in everything])
    x = _Log10(left, right, chart.x0, chart.x1)
    y = _Linear(0.0, top, chart.y0, chart.y1)

    ticks, step = _nice_ticks(0.0, top)
    chart.yticks((y(t), _tick_text(t, step)) for t in ticks)
    decades = range(math.ceil(math.log10(left) - 1e-9), math.floor(math.log10(right) + 1e-9) + 1)
    chart.xticks(((x(10.0**k), f"{10.0**k:g}") for k in decades), grid=True)

    upper, lower, semi = _itic_curves()
    curves = (
        ("upper", upper, CURVE_COLOUR, None, gettext("ITIC upper curve")),
        ("lower", lower, CURVE_COLOUR, LOWER_DASH, gettext("ITIC lower curve")),
        ("semi", semi, SEMI_COLOUR, SEMI_DASH, gettext("SEMI F47 curve")),
    )
    entries: list[tuple[str, Callable[..., list[Any]]]] = []
    for name, curve, colour, dash, label in curves:
        group = Group()
        for piece in _clipped(curve, top):
            flat = [c for t, v in piece for c in (x(t), y(v))]
            group.add(
                PolyLine(
                    flat, strokeColor=_colour(colour), strokeWidth=1.1, strokeDashArray=dash, strokeLineJoin=1
                )
            )
        chart.add("data", _tag(group, f"curve-{name}"))
        entries.append((label, _line(colour, dash=dash)))

    for kind, label, colour in (
        ("dip", gettext("Dips"), DIP_COLOUR),
        ("swell", gettext("Swells"), SWELL_COLOUR),
    ):
        if points[kind]:
            group = Group(*(_dot(x(d), y(v), 1.6, colour, opacity=0.8) for d, v in points[kind]))
            chart.add("over", _tag(group, kind, points=tuple(points[kind])))
            entries.append((label, _marker(colour)))
    if not everything:
        # Above the 120 % step, in the one region no curve crosses.
        chart.note(gettext("No dips or swells recorded in this period."), 0.6, 0.75)

    chart.frame()
    chart.title(gettext("Dips and swells on the ITIC and SEMI F47 curves"))
    chart.xlabel(gettext("Duration (s)"))
    chart.ylabel(gettext("Voltage relative to nominal (%)"))
    chart.legend(entries)
    return _tag(chart.drawing, "chart", xlim=(left, right), ylim=(0.0, top))

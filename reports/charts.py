"""The four charts of an account's monthly supply-quality PDF, as PNG bytes.

Drawn with matplotlib's object API (``Figure`` on an Agg canvas, never pyplot): pyplot keeps
a global figure registry and current-figure state, which is neither thread-safe nor free
when the archive renders 1,000 reports; a bare ``Figure`` is garbage like any object.
No rcParams are touched either: the fonts reach every text as per-artist properties.

Each chart is sized for the text width of an A4 page (17 cm) at 150 dpi, readable when
printed and small in the PDF. Every visible text comes through the caller's ``gettext``
(English msgids, a Chinese catalog for Chinese reports); Chinese needs a CJK font, so
WenQuanYi Micro Hei (Debian's fonts-wqy-microhei) is registered once and put first in
every text's font family, DejaVu Sans behind it for glyphs it lacks.

Inputs are the report JSON's plain dicts; ``None`` means unknown and is never drawn as 0:
a day without a rate is a hatched "no data" marker, a gap in a voltage stays a gap.

Speed, measured in the development container (matplotlib 3.11, 2 shared vCPUs on which a bare
one-line matplotlib PNG takes 55 ms and a 10**7-step Python loop 1.07 s) for a 30-day month
with three phases, four outages and forty dips: the four charts take 0.43 s of CPU together
(best of 20: VQR 0.13, envelope 0.13, outages 0.07, ITIC 0.09), some eight bare figures'
worth, so about 0.15-0.2 s on a current desktop; the archive's 1,000 reports, 7 minutes of
one core here. The cost is matplotlib's per-artist overhead, not the data: the 30 labelled
day ticks of the two daily charts are 0.045 s each. Constrained layout (it draws everything
twice) and minor ticks on the log axis had doubled the time, so neither is used.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import numpy as np
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from analysis.curves import ITIC_FIRST_S, itic_lower_pct, itic_upper_pct, semi_f47_required_pct
from analysis.qualification import COMPARE_DECIMALS

__all__ = [
    "CJK_FONT_PATH",
    "daily_vqr_png",
    "envelope_png",
    "font_families",
    "itic_png",
    "outage_timeline_png",
]

logger = logging.getLogger(__name__)

Gettext = Callable[[str], str]
Row = Mapping[str, Any]

CJK_FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # Debian fonts-wqy-microhei
FALLBACK_FAMILY = "DejaVu Sans"  # bundled with matplotlib, so always there

CM = 1.0 / 2.54
WIDTH_CM = 17.0  # A4 width less 2 cm margins each side
HEIGHT_CM = 5.5
TALL_HEIGHT_CM = 6.0  # the envelope and ITIC charts carry more legend entries
DPI = 150
LEFT_CM = 1.6  # y label and tick labels up to six digits (110 kV in volts)
RIGHT_CM = 3.8  # the legend
TOP_CM = 0.6  # the title
BOTTOM_CM = 0.7  # x tick labels and the ITIC chart's x label
TEXT_PT = 7.0
SMALL_PT = 6.5
TITLE_PT = 8.0


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
DIP_COLOUR = "#c0392b"
SWELL_COLOUR = "#d4a017"
CURVE_COLOUR = "#444444"
SEMI_COLOUR = "#3478c8"

VQR_TOP_PCT = 100.5
VQR_FLOOR_PCT = 90.0
ITIC_LAST_S = 100.0
ITIC_TOP_PCT = 220.0
MIN_SPAN_FRACTION = 1.0 / 300.0  # a one-minute outage in a month would be under a pixel wide

# -- fonts -----------------------------------------------------------------------------------
_font_lock = threading.Lock()
_registered: dict[str, str | None] = {}  # font path -> its family name, None when unusable


def font_families(font_path: str | Path | None = None) -> list[str]:
    """The family list for every text: the CJK font first, DejaVu Sans for what it lacks.

    The font file is registered with matplotlib's font manager once per path (under a lock:
    report workers may start in several threads); a missing or unreadable file is logged
    once and the charts fall back to DejaVu Sans, whose missing Chinese glyphs matplotlib
    then reports itself.
    """
    path = os.fspath(CJK_FONT_PATH if font_path is None else font_path)
    with _font_lock:
        if path not in _registered:
            _registered[path] = _register_font(path)
        family = _registered[path]
    return [family, FALLBACK_FAMILY] if family else [FALLBACK_FAMILY]


def _register_font(path: str) -> str | None:
    if not os.path.isfile(path):
        logger.warning(
            "CJK font %s not found (Debian package fonts-wqy-microhei); report charts fall back to %s "
            "and Chinese labels will not render",
            path,
            FALLBACK_FAMILY,
        )
        return None
    try:
        font_manager.fontManager.addfont(path)
        name: str = FontProperties(fname=path).get_name()
    except (OSError, RuntimeError, ValueError) as exc:
        logger.warning("CJK font %s unusable (%s); report charts fall back to %s", path, exc, FALLBACK_FAMILY)
        return None
    return name


@dataclass(frozen=True)
class _Fonts:
    """Font properties of one chart; passed to each text since rcParams stay untouched."""

    families: tuple[str, ...]

    def prop(self, size: float = TEXT_PT) -> FontProperties:
        return FontProperties(family=list(self.families), size=size)


def _fonts(font_path: str | Path | None) -> _Fonts:
    return _Fonts(tuple(font_families(font_path)))


# -- figure plumbing -------------------------------------------------------------------------
def _figure(height_cm: float = HEIGHT_CM) -> tuple[Figure, Axes]:
    """One Axes on its own Agg canvas, in fixed margins.

    Fixed margins rather than constrained layout: the layout engine draws every chart twice
    (once to measure), which doubled the time; and with the same margins the plot areas of
    the four charts line up down the page. The right margin holds the legend.
    """
    fig = Figure(figsize=(WIDTH_CM * CM, height_cm * CM), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=LEFT_CM / WIDTH_CM,
        right=1.0 - RIGHT_CM / WIDTH_CM,
        top=1.0 - TOP_CM / height_cm,
        bottom=BOTTOM_CM / height_cm,
    )
    ax = fig.add_subplot()
    return fig, ax


def _png(fig: Figure) -> bytes:
    """PNG bytes; without the Software stamp, so bytes change only when the chart does."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _style(ax: Axes, fonts: _Fonts, *, ygrid: bool = True) -> None:
    """Tick label font and size for every tick the axes will make, set once here: passing a
    font to ``set_xticks`` instead copies it into each label, which cost a third of a chart."""
    ax.tick_params(labelsize=SMALL_PT, labelfontfamily=list(fonts.families), length=2.5, pad=2)  # type: ignore[arg-type]
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if ygrid:
        ax.grid(axis="y", color="#dddddd", linewidth=0.5, zorder=0)
    ax.set_axisbelow(True)


def _title(ax: Axes, text: str, fonts: _Fonts) -> None:
    # An explicit y skips matplotlib's search for a free spot above the axes, a costly
    # tight-bbox pass; WenQuanYi has no bold face, so size alone marks the title.
    ax.set_title(text, loc="left", fontproperties=fonts.prop(TITLE_PT), y=1.0, pad=4)


def _legend(ax: Axes, handles: Sequence[Any], fonts: _Fonts) -> None:
    """Right of the plot, so the bars and lines keep the full height of a short chart."""
    if handles:
        ax.legend(
            handles=list(handles),
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            prop=fonts.prop(SMALL_PT),
            frameon=False,
            borderaxespad=0.0,
            handlelength=1.8,
        )


def _note(ax: Axes, text: str, fonts: _Fonts, x: float = 0.5, y: float = 0.5) -> None:
    ax.text(
        x,
        y,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="#555555",
        fontproperties=fonts.prop(TEXT_PT),
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 2.0},  # readable over hatching
        zorder=5,
        gid="note",
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


def _day_axis(ax: Axes, days: Sequence[date], fonts: _Fonts) -> None:
    """Days at integer positions: the day of month when one month (the report's case), else mm-dd."""
    n = len(days)
    if not n:
        ax.set_xticks([])
        ax.set_xlim(-0.5, 0.5)
        return
    one_month = len({(d.year, d.month) for d in days}) == 1
    if one_month:
        step, labels = 1, [str(d.day) for d in days]
    else:
        step, labels = max(1, math.ceil(n / 12)), [d.strftime("%m-%d") for d in days]
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [labels[i] for i in ticks])  # font: see _style
    ax.set_xlim(-0.6, n - 0.4)


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
def _daily_vqr_figure(
    daily: Sequence[Row], target_pct: float | None, gettext: Gettext, *, font_path: str | Path | None = None
) -> Figure:
    """The VQR chart before rendering; tests read its bars (gid "vqr") and markers (gid "no-data")."""
    fonts = _fonts(font_path)
    fig, ax = _figure(HEIGHT_CM)
    _style(ax, fonts)
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
    ax.set_ylim(bottom, VQR_TOP_PCT)

    handles: list[Any] = []
    below = [
        target is not None and round(v, COMPARE_DECIMALS) < round(target, COMPARE_DECIMALS) for _, v in known
    ]
    if known:
        if target is None:
            colours = [NEUTRAL_COLOUR] * len(known)
        else:
            colours = [BELOW_COLOUR if b else MEETS_COLOUR for b in below]
        ax.bar(
            [i for i, _ in known],
            [v for _, v in known],
            width=0.7,
            color=colours,
            linewidth=0,
            zorder=2,
            gid="vqr",
        )
    if target is not None:
        ax.axhline(target, color=LIMIT_COLOUR, linewidth=0.9, linestyle=(0, (4, 2)), zorder=3)
        if known:
            handles.append(Patch(facecolor=MEETS_COLOUR, label=gettext("Meets target")))
            if any(below):
                handles.append(Patch(facecolor=BELOW_COLOUR, label=gettext("Below target")))
        handles.append(
            Line2D(
                [],
                [],
                color=LIMIT_COLOUR,
                linewidth=0.9,
                linestyle=(0, (4, 2)),
                label=gettext("Target %(pct)s %%") % {"pct": f"{target:g}"},
            )
        )
    for i in missing:
        ax.axvspan(
            i - 0.35,
            i + 0.35,
            facecolor=NO_DATA_FACE,
            edgecolor=NO_DATA_EDGE,
            hatch="////",
            linewidth=0,
            zorder=1,
            gid="no-data",
        )
    if missing:
        handles.append(
            Patch(facecolor=NO_DATA_FACE, edgecolor=NO_DATA_EDGE, hatch="////", label=gettext("No data"))
        )
    if not known:
        _note(ax, gettext("No readings in this period."), fonts)

    _day_axis(ax, days, fonts)
    _title(ax, gettext("Daily voltage qualification rate"), fonts)
    ax.set_ylabel(gettext("Qualification rate (%)"), fontproperties=fonts.prop(TEXT_PT))
    _legend(ax, handles, fonts)
    return fig


def daily_vqr_png(
    daily: Sequence[Row], target_pct: float | None, gettext: Gettext, *, font_path: str | Path | None = None
) -> bytes:
    """Bars of each day's voltage qualification rate, the target as a dashed line.

    ``daily``: ``{"day": "2026-11-01", "vqr_pct": 99.2 | None, ...}``. A day without a rate
    is a hatched grey marker, not a bar of 0 (which would read as a day of total failure).
    The y axis starts at 90 % or 1 point under the lowest day (or the target), so
    differences between 99 % and 100 % stay visible.
    """
    return _png(_daily_vqr_figure(daily, target_pct, gettext, font_path=font_path))


# -- daily voltage envelope ------------------------------------------------------------------
def _phase_keys(phases: Mapping[str, Any], rows: Mapping[date, Row]) -> list[str]:
    seen = set(phases)
    for row in rows.values():
        seen.update((row.get("phases") or {}).keys())
    return [p for p in PHASE_ORDER if p in seen] + sorted(seen - set(PHASE_ORDER))


def _series(days: Sequence[date], rows: Mapping[date, Row], phase: str, field: str) -> np.ndarray:
    """One phase's daily values with NaN for unknown, which lines and fills leave as gaps."""
    out = np.full(len(days), np.nan)
    for i, d in enumerate(days):
        row = rows.get(d)
        stats = ((row.get("phases") or {}).get(phase) or {}) if row is not None else {}
        x = _number(stats.get(field))
        if x is not None:
            out[i] = x
    return out


def _envelope_figure(
    daily: Sequence[Row],
    phases: Mapping[str, Mapping[str, Any]],
    gettext: Gettext,
    *,
    font_path: str | Path | None = None,
) -> Figure:
    """The envelope chart before rendering; bands have gid "band-<phase>", mean lines "mean-<phase>"."""
    fonts = _fonts(font_path)
    fig, ax = _figure(TALL_HEIGHT_CM)
    _style(ax, fonts)
    days, rows = _days(daily)
    x = np.arange(len(days), dtype=float)
    handles: list[Any] = []
    any_data = False
    for key in _phase_keys(phases, rows):
        colour = PHASE_COLOURS.get(key, OTHER_PHASE_COLOUR)
        label = gettext(PHASE_LABELS[key]) if key in PHASE_LABELS else gettext(key.upper())
        lo = _series(days, rows, key, "min_v")
        hi = _series(days, rows, key, "max_v")
        mean = _series(days, rows, key, "mean_v")
        band = ~(np.isnan(lo) | np.isnan(hi))
        if band.any():
            # where= splits the fill at unknown days, so a gap is never bridged.
            ax.fill_between(
                x,
                lo,
                hi,
                where=band,
                interpolate=False,
                color=colour,
                alpha=0.2,
                linewidth=0,
                gid=f"band-{key}",
            )
            # A day known alone between unknown ones makes no area; a short bar shows it.
            prev = np.concatenate([[False], band[:-1]])
            nxt = np.concatenate([band[1:], [False]])
            lone = band & ~prev & ~nxt
            if lone.any():
                ax.vlines(
                    x[lone], lo[lone], hi[lone], colors=colour, alpha=0.35, linewidth=3, gid=f"band-{key}"
                )
        if not np.isnan(mean).all():
            ax.plot(x, mean, color=colour, linewidth=1.1, marker="o", markersize=1.8, gid=f"mean-{key}")
        if band.any() or not np.isnan(mean).all():
            any_data = True
            handles.append(Line2D([], [], color=colour, linewidth=1.1, label=label))
    if any_data:
        handles.append(Patch(facecolor="#999999", alpha=0.3, label=gettext("Daily min–max")))

    limits = {
        "upper": sorted({v for p in phases.values() if (v := _number(p.get("upper_v"))) is not None}),
        "lower": sorted({v for p in phases.values() if (v := _number(p.get("lower_v"))) is not None}),
    }
    styles = {"upper": (0, (5, 2)), "lower": (0, (1.5, 1.5))}
    names = {"upper": gettext("Upper limit"), "lower": gettext("Lower limit")}
    for kind in ("upper", "lower"):
        for v in limits[kind]:
            ax.axhline(
                v, color=LIMIT_COLOUR, linewidth=0.9, linestyle=styles[kind], zorder=3, gid=f"limit-{kind}"
            )
            # The value at the right end, just outside the band between the limits.
            ax.annotate(
                f"{v:g}",
                xy=(1.0, v),
                xycoords=("axes fraction", "data"),
                xytext=(0.0, 1.5 if kind == "upper" else -1.5),
                textcoords="offset points",
                ha="right",
                va="bottom" if kind == "upper" else "top",
                color=LIMIT_COLOUR,
                fontproperties=fonts.prop(SMALL_PT - 0.5),
            )
        if limits[kind]:
            handles.append(
                Line2D([], [], color=LIMIT_COLOUR, linewidth=0.9, linestyle=styles[kind], label=names[kind])
            )
    if not any_data:
        _note(ax, gettext("No readings in this period."), fonts)
        if not (limits["upper"] or limits["lower"]):
            ax.set_yticks([])  # no values at all: a scale around 0 V would be invented
    ax.margins(y=0.12)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    _day_axis(ax, days, fonts)
    _title(ax, gettext("Daily voltage: mean and min–max band"), fonts)
    ax.set_ylabel(gettext("Voltage (V)"), fontproperties=fonts.prop(TEXT_PT))
    _legend(ax, handles, fonts)
    return fig


def envelope_png(
    daily: Sequence[Row],
    phases: Mapping[str, Mapping[str, Any]],
    gettext: Gettext,
    *,
    font_path: str | Path | None = None,
) -> bytes:
    """Each phase's daily min–max band and mean line between the dashed limit lines.

    ``daily[i]["phases"][p]``: ``{"max_v", "min_v", "mean_v"}`` (None when unknown);
    ``phases[p]``: ``{"nominal_v", "lower_v", "upper_v"}``. Unknown days stay gaps: a line
    drawn across them would claim readings the meter never sent. Limit lines carry their
    value at the right edge, since phase and line voltages may have different limits.
    """
    return _png(_envelope_figure(daily, phases, gettext, font_path=font_path))


# -- outage timeline -------------------------------------------------------------------------
def _outage_timeline_figure(
    outages: Sequence[Row],
    period_start: str,
    period_end: str,
    gettext: Gettext,
    *,
    font_path: str | Path | None = None,
) -> Figure:
    """The timeline before rendering; spans have gid "outage-<cause>" ("outage-open" hatched)."""
    fonts = _fonts(font_path)
    fig, ax = _figure(HEIGHT_CM)
    _style(ax, fonts, ygrid=False)
    start = _time(period_start, None)
    if start is None:
        raise ValueError(f"period_start is not an ISO-8601 time: {period_start!r}")
    tz = start.tzinfo
    end = _time(period_end, tz)
    if end is None or end <= start:
        raise ValueError(f"period_end is not an ISO-8601 time after period_start: {period_end!r}")
    x0, x1 = float(mdates.date2num(start)), float(mdates.date2num(end))
    min_width = (x1 - x0) * MIN_SPAN_FRACTION

    spans: dict[str, list[tuple[float, float, bool]]] = {}
    for o in outages:
        s = _time(o.get("start"), tz)
        if s is None:
            continue
        e = None if o.get("open") else _time(o.get("end"), tz)
        is_open = e is None
        left = max(float(mdates.date2num(s)), x0)
        right = min(x1 if e is None else float(mdates.date2num(e)), x1)
        if left > x1 or right < x0:
            continue  # wholly outside the period
        cause = str(o.get("cause") or "unknown")
        spans.setdefault(cause if cause in CAUSE_COLOURS else "unknown", []).append(
            (left, max(right - left, min_width), is_open)
        )

    lanes = [c for c in CAUSE_ORDER if c in spans]
    handles: list[Any] = []
    any_open = False
    for lane, cause in enumerate(lanes):
        colour = CAUSE_COLOURS[cause]
        for is_open in (False, True):
            mine = [(left, width) for left, width, o in spans[cause] if o == is_open]
            if not mine:
                continue
            any_open = any_open or is_open
            ax.barh(
                [lane] * len(mine),
                [w for _, w in mine],
                left=[left for left, _ in mine],
                height=0.55,
                color=colour,
                edgecolor="white" if is_open else colour,
                hatch="////" if is_open else None,
                linewidth=0.3,
                zorder=2,
                gid="outage-open" if is_open else f"outage-{cause}",
            )
        handles.append(Patch(facecolor=colour, label=gettext(CAUSE_LABELS[cause])))
    if any_open:
        handles.append(
            Patch(
                facecolor="#777777",
                edgecolor="white",
                hatch="////",
                label=gettext("Still open at period end"),
            )
        )
    if lanes:
        ax.set_yticks(range(len(lanes)), [gettext(CAUSE_LABELS[c]) for c in lanes])
        ax.set_ylim(len(lanes) - 0.4, -0.6)  # first lane on top
        ax.grid(axis="x", color="#dddddd", linewidth=0.5, zorder=0)
    else:
        ax.set_yticks([])
        ax.set_ylim(0.0, 1.0)
        _note(ax, gettext("No outages in this period."), fonts)

    ax.set_xlim(x0, x1)
    locator = mdates.AutoDateLocator(tz=tz, minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    fmt = "%m-%d" if end - start > timedelta(days=2) else "%d %H:%M"
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=tz))
    _title(ax, gettext("Outage timeline"), fonts)
    _legend(ax, handles, fonts)
    return fig


def outage_timeline_png(
    outages: Sequence[Row],
    period_start: str,
    period_end: str,
    gettext: Gettext,
    *,
    font_path: str | Path | None = None,
) -> bytes:
    """Outages as spans on the period's time axis, one lane and colour per cause.

    ``outages``: ``{"start", "end" | None, "duration_s", "cause", "length", "open"}``; an open
    outage runs to ``period_end`` and is hatched, since its end is not known yet. Spans are
    clipped to the period and drawn at least 1/300 of it wide: a one-minute outage is a
    fraction of a pixel in a month, but the reader must see that it happened. Ticks are in
    the offset of ``period_start`` (the account's local time).
    """
    return _png(_outage_timeline_figure(outages, period_start, period_end, gettext, font_path=font_path))


# -- ITIC / SEMI F47 -------------------------------------------------------------------------
@functools.cache
def _itic_curves() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Curve points as the dashboard draws them: a log grid plus both sides of every step.

    Computed once: the curves are the same in every report.
    """
    grid = np.logspace(math.log10(ITIC_FIRST_S), math.log10(ITIC_LAST_S), 400)
    steps = np.array([0.001, 0.003, 0.02, 0.5, 10.0])
    t = np.unique(np.concatenate([grid, steps, steps * 1.0000001]))
    semi_t = t[(t >= 0.05) & (t <= 1.0)]
    out = (t, itic_upper_pct(t), itic_lower_pct(t), semi_t, semi_f47_required_pct(semi_t))
    for a in out:
        a.setflags(write=False)
    return out


def _itic_figure(dips: Sequence[Row], gettext: Gettext, *, font_path: str | Path | None = None) -> Figure:
    """The ITIC chart before rendering; event markers have gid "dip" and "swell"."""
    fonts = _fonts(font_path)
    fig, ax = _figure(TALL_HEIGHT_CM)
    _style(ax, fonts)
    t, upper, lower, semi_t, semi = _itic_curves()
    ax.plot(t, upper, color=CURVE_COLOUR, linewidth=1.1, label=gettext("ITIC upper curve"))
    ax.plot(
        t,
        lower,
        color=CURVE_COLOUR,
        linewidth=1.1,
        linestyle=(0, (1.5, 1.5)),
        label=gettext("ITIC lower curve"),
    )
    ax.plot(
        semi_t, semi, color=SEMI_COLOUR, linewidth=1.1, linestyle=(0, (5, 2)), label=gettext("SEMI F47 curve")
    )

    points: dict[str, list[tuple[float, float]]] = {"dip": [], "swell": []}
    for event in dips:
        d, level = _number(event.get("duration_s")), _number(event.get("level_pct"))
        kind = event.get("type")
        if d is None or level is None or d <= 0 or kind not in points:
            continue  # unknown duration or level: no honest place for the point
        points[kind].append((d, level))
    for kind, label, colour in (
        ("dip", gettext("Dips"), DIP_COLOUR),
        ("swell", gettext("Swells"), SWELL_COLOUR),
    ):
        if points[kind]:
            ax.scatter(
                [d for d, _ in points[kind]],
                [v for _, v in points[kind]],
                s=9,
                color=colour,
                alpha=0.8,
                linewidths=0,
                zorder=4,
                label=label,
                gid=kind,
            )
    everything = points["dip"] + points["swell"]
    if not everything:
        # Above the 120 % step, in the one region no curve crosses.
        _note(ax, gettext("No dips or swells recorded in this period."), fonts, x=0.6, y=0.75)

    ax.set_xscale("log")
    left = min([ITIC_FIRST_S] + [d for d, _ in everything])
    right = max([ITIC_LAST_S] + [d * 1.5 for d, _ in everything])
    ax.set_xlim(left, right)
    # Never hide a swell above the usual 220 %: the axis grows to it.
    top = max([ITIC_TOP_PCT] + [math.ceil(v / 10.0) * 10.0 + 10.0 for _, v in everything])
    ax.set_ylim(0.0, top)
    ax.xaxis.set_major_locator(LogLocator(base=10.0, numticks=12))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())  # 9 ticks a decade: the chart's slowest part
    ax.grid(axis="x", which="major", color="#dddddd", linewidth=0.5, zorder=0)
    _title(ax, gettext("Dips and swells on the ITIC and SEMI F47 curves"), fonts)
    ax.set_xlabel(gettext("Duration (s)"), fontproperties=fonts.prop(TEXT_PT), labelpad=1)
    ax.set_ylabel(gettext("Voltage relative to nominal (%)"), fontproperties=fonts.prop(TEXT_PT))
    handles, _labels = ax.get_legend_handles_labels()
    _legend(ax, handles, fonts)
    return fig


def itic_png(dips: Sequence[Row], gettext: Gettext, *, font_path: str | Path | None = None) -> bytes:
    """Dips and swells (level in % of nominal against duration, log axis) on the ITIC and SEMI F47 curves.

    ``dips``: ``{"type": "dip" | "swell", "duration_s", "level_pct"}``; the curves come from
    ``analysis.curves``, the same functions that classify the events, so the picture and the
    report's counts cannot disagree. An empty list draws the curves with a note.
    """
    return _png(_itic_figure(dips, gettext, font_path=font_path))

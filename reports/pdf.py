"""The monthly supply-quality report of one account as a PDF, in Chinese or English.

It prints the report JSON of ``pqmon report`` (``analysis.report.site_report``) and nothing
it computes itself: one source, so the paper and the command line cannot disagree. Chinese
is real text in an embedded subset of WenQuanYi Micro Hei (Debian's fonts-wqy-microhei),
so it can be searched, copied and read by ``pdftotext``; without that font file the PDF
falls back to ReportLab's built-in CID font STSong-Light, which is not embedded (a PC
without a Chinese font would show blanks), and says so in the log.

Layout, as utilities file these reports: cover; headline figures beside the supply side
(the feeder) and the gap; per-phase statistics laid out as a voltage monitor prints them;
outages; charts; EN 50160 weeks; power quality; the rules applied, in words; what changed
since the previous version; a sign-off block.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from reports import charts
from reports.texts import (
    MISSING,
    N_,
    Gettext,
    fixed,
    gettext_for,
    hours_minutes,
    local,
    minutes,
    pct,
    signed,
)

log = logging.getLogger(__name__)

FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
FONT = "pqmon-cjk"
FALLBACK_FONT = "STSong-Light"
INK = colors.HexColor("#1f2d3d")
RULE = colors.HexColor("#b8c2cc")
HEAD = colors.HexColor("#e8eef5")
PHASE_LABELS = {"a": "A", "b": "B", "c": "C", "ab": "AB", "bc": "BC", "ca": "CA"}


@dataclass(frozen=True)
class ReportDoc:
    """Everything printed besides the report JSON: who issues it, which version, what changed."""

    report: dict[str, Any]
    lang: str
    utility: str
    report_no: str
    issued: date
    version: int | None = None  # None: not an issued version (the month so far, or made on request)
    provisional: bool = False  # the month is not over: figures will still change
    feeder_name: str | None = None
    voltage_class_kv: float | None = None
    changes: Sequence[dict[str, Any]] = field(default_factory=list)  # figure, old, new (version >= 2)
    short_outage_s: float = 180.0  # PQMON_SHORT_OUTAGE_S, as the figures were computed
    vqr_target_pct: float | None = None  # drawn on the daily chart


@functools.cache
def font_name(path: Path = FONT_PATH) -> str:
    """Register the CJK font once per process; the name to draw every text with."""
    if path.exists():
        pdfmetrics.registerFont(TTFont(FONT, str(path), subfontIndex=0))
        return FONT
    log.warning(
        "%s not found: Chinese in PDF reports uses the non-embedded STSong-Light; install"
        " Debian's fonts-wqy-microhei so that every reader sees it",
        path,
    )
    pdfmetrics.registerFont(UnicodeCIDFont(FALLBACK_FONT))
    return FALLBACK_FONT


class _Styles:
    def __init__(self, font: str) -> None:
        base = {"fontName": font, "textColor": INK, "wordWrap": "CJK"}
        self.body = ParagraphStyle("body", fontSize=9, leading=13, **base)
        self.small = ParagraphStyle("small", fontSize=7.5, leading=10, **base)
        self.h1 = ParagraphStyle("h1", fontSize=20, leading=28, alignment=TA_CENTER, **base)
        self.h2 = ParagraphStyle("h2", fontSize=12.5, leading=18, spaceBefore=10, spaceAfter=4, **base)
        self.cover = ParagraphStyle("cover", fontSize=12, leading=20, alignment=TA_CENTER, **base)
        self.cell = ParagraphStyle("cell", fontSize=8, leading=10, **base)


def _table(rows: list[list[Any]], widths: Sequence[float], font: str, *, header: bool = True) -> Table:
    """A ruled table; the first row is a header unless told otherwise."""
    t = Table(rows, colWidths=list(widths), repeatRows=1 if header else 0, hAlign="LEFT")
    style: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), font, 8),
        ("TEXTCOLOR", (0, 0), (-1, -1), INK),
        ("GRID", (0, 0), (-1, -1), 0.4, RULE),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), HEAD))
    t.setStyle(TableStyle(style))
    return t


# -- the sections ---------------------------------------------------------------------------
def headline_rows(report: dict[str, Any], _: Gettext) -> list[list[str]]:
    """Figure | account | supply side | gap: what the customer got beside what the feeder got."""
    supply = report.get("supply_side") or {}
    gap = supply.get("gap") or {}
    outages = report.get("outages") or {}
    rows = [[_("Figure"), _("This account"), _("Supply side (feeder)"), _("Gap")]]
    rows.append(
        [_("Voltage qualification rate"), pct(report.get("vqr_pct")), pct(supply.get("vqr_pct")),
         signed(gap.get("vqr_pct"), 3, " pp")]
    )  # fmt: skip
    rows.append(
        [_("Out-of-limit minutes per phase"), fixed(report.get("out_min_per_phase"), 1),
         fixed(supply.get("out_min_per_phase"), 1), signed(gap.get("out_min_per_phase"), 1)]
    )  # fmt: skip
    rows.append(
        [_("Mean deviation from nominal"), signed(report.get("mean_deviation_pct"), 3, " %"),
         signed(supply.get("mean_deviation_pct"), 3, " %"), signed(gap.get("mean_deviation_pct"), 3, " pp")]
    )  # fmt: skip
    rows.append([_("Supply reliability RS-1"), pct(report.get("rs1_pct"), 4), MISSING, MISSING])
    rows.append(
        [_("RS-1 without short interruptions"), pct(report.get("rs1_excl_short_pct"), 4), MISSING, MISSING]
    )
    rows.append(
        [_("Outages (sustained / short)"),
         f"{fixed(outages.get('count'), 0)} ({fixed(outages.get('sustained'), 0)} / "
         f"{fixed(outages.get('short'), 0)})", MISSING, MISSING]
    )  # fmt: skip
    rows.append([_("Outage duration (h:mm:ss)"), hours_minutes(outages.get("duration_s")), MISSING, MISSING])
    rows.append(
        [
            _("Reading coverage"),
            pct(report.get("coverage_pct"), 2),
            pct(supply.get("coverage_pct"), 2),
            MISSING,
        ]
    )
    rows.append([_("Supply-state coverage"), pct(report.get("event_coverage_pct"), 2), MISSING, MISSING])
    return rows


PHASE_STATS: tuple[tuple[str, str, Any], ...] = (
    (N_("Nominal voltage (V)"), "nominal_v", lambda v: fixed(v, 2)),
    (N_("Upper limit (V)"), "upper_v", lambda v: fixed(v, 2)),
    (N_("Lower limit (V)"), "lower_v", lambda v: fixed(v, 2)),
    (N_("Operating time (min)"), "monitored_min", minutes),
    (N_("Qualified time (min)"), "qualified_min", minutes),
    (N_("Qualification rate"), "vqr_pct", pct),
    (N_("Time above upper limit (min)"), "over_min", minutes),
    (N_("Rate above upper limit"), "over_pct", pct),
    (N_("Time below lower limit (min)"), "under_min", minutes),
    (N_("Rate below lower limit"), "under_pct", pct),
    (N_("Maximum (V)"), "max_v", lambda v: fixed(v, 2)),
    (N_("Time of maximum"), "max_at", local),
    (N_("Minimum (V)"), "min_v", lambda v: fixed(v, 2)),
    (N_("Time of minimum"), "min_at", local),
    (N_("Mean (V)"), "mean_v", lambda v: fixed(v, 2)),
    (N_("Missing minutes"), "missing_min", minutes),
)


def phase_rows(report: dict[str, Any], _: Gettext) -> list[list[str]]:
    """Statistic | phase A | B | C: a voltage monitor's monthly sheet, one column per phase."""
    phases = report.get("phases") or {}
    names = list(phases)
    rows = [[_("Statistic"), *(_("Phase %(name)s") % {"name": PHASE_LABELS[p]} for p in names)]]
    for label, key, show in PHASE_STATS:
        cells = []
        for p in names:
            figures = phases[p]
            if key == "qualified_min":
                value = figures["monitored_min"] - figures["over_min"] - figures["under_min"]
            else:
                value = figures.get(key)
            cells.append(show(value))
        rows.append([_(label), *cells])
    return rows


CAUSES = {"planned": N_("Planned"), "unplanned": N_("Unplanned"), "unknown": N_("Unknown")}
SOURCES = {"event": N_("meter event"), "readings": N_("readings"), "inferred": N_("inferred")}
LENGTHS = {"short": N_("short"), "sustained": N_("sustained")}


def outage_rows(report: dict[str, Any], _: Gettext) -> list[list[str]]:
    rows = [[_("Start"), _("End"), _("Duration"), _("Cause"), _("Kind"), _("Start known from"),
             _("End known from")]]  # fmt: skip
    for o in report.get("outage_list") or []:
        rows.append(
            [
                local(o["start"]) + (" *" if o.get("continued") else ""),
                _("still open") if o.get("open") else local(o.get("end")),
                hours_minutes(o.get("duration_s")),
                _(CAUSES.get(str(o.get("cause")), str(o.get("cause")))),
                _(LENGTHS.get(str(o.get("length")), str(o.get("length") or MISSING))),
                _(SOURCES.get(str(o.get("start_source")), str(o.get("start_source")))),
                MISSING
                if o.get("open")
                else _(SOURCES.get(str(o.get("end_source")), str(o.get("end_source")))),
            ]
        )
    return rows


VERDICTS = {"pass": N_("pass"), "fail": N_("fail"), "insufficient_data": N_("not enough data")}


def week_rows(report: dict[str, Any], _: Gettext) -> list[list[str]]:
    rows = [[_("Week from"), _("Days"), _("Within ±10 % (lowest phase)"), _("Valid 10-min values"),
             _("Needed"), _("Verdict")]]  # fmt: skip
    for w in (report.get("en50160") or {}).get("weeks") or []:
        shares = [v for v in (w.get("within_pct") or {}).values() if v is not None]
        rows.append(
            [
                w["week_start"],
                str(w["days"]),
                pct(min(shares), 2) if shares else MISSING,
                fixed(w.get("valid_10min"), 0),
                fixed(w.get("required_10min"), 0),
                _(VERDICTS.get(w["verdict"], w["verdict"])),
            ]
        )
    return rows


def pq_rows(report: dict[str, Any], _: Gettext) -> list[list[str]]:
    pq = report.get("pq") or {}
    f, unb, thd, plt = (pq.get(k) or {} for k in ("frequency", "unbalance", "thd", "plt"))
    events = pq.get("events") or {}
    return [
        [_("Index"), _("Values judged"), _("Within the limit"), _("Worst"), _("Limit")],
        [_("Frequency deviation"), fixed(f.get("n"), 0), pct(f.get("within_pct"), 2),
         with_unit(fixed(f.get("max_deviation_hz"), 3), "Hz"),
         "±" + with_unit(fixed(f.get("limit_hz"), 2), "Hz")],
        [_("Voltage unbalance"), fixed(unb.get("n"), 0), pct(unb.get("within_pct"), 2),
         pct(unb.get("max_pct"), 2), pct(unb.get("limit_pct"), 1)],
        [_("Voltage THD"), fixed(thd.get("n"), 0), pct(thd.get("within_pct"), 2), pct(thd.get("max_pct"), 2),
         pct(thd.get("limit_pct"), 1)],
        [_("Long-term flicker Plt"), fixed(plt.get("n"), 0), pct(plt.get("within_pct"), 2),
         fixed(plt.get("max"), 2), fixed(plt.get("limit"), 2)],
        [_("Dips / swells"), f"{fixed(events.get('dips', 0), 0)} / {fixed(events.get('swells', 0), 0)}",
         MISSING, MISSING, MISSING],
    ]  # fmt: skip


def with_unit(text: str, unit: str) -> str:
    return text if text == MISSING else f"{text} {unit}"


def change_rows(changes: Sequence[dict[str, Any]], _: Gettext) -> list[list[str]]:
    rows = [[_("Figure"), _("Previous version"), _("This version")]]
    for c in changes:
        rows.append([_(str(c.get("label") or c["figure"])), str(c.get("old_text")), str(c.get("new_text"))])
    return rows


def definitions(doc: ReportDoc, _: Gettext) -> list[str]:
    """The rules applied, in words, with this account's own numbers where they matter."""
    report = doc.report
    phases = report.get("phases") or {}
    first: dict[str, Any] = next(iter(phases.values()), {})
    period = report.get("period") or {}
    out = [
        _(
            "Voltage qualification (GB/T 12325): each one-minute mean is compared with the limits;"
            " a minute strictly above the upper or below the lower limit is out of limits. Rate ="
            " (1 − minutes out of limits ÷ minutes monitored) × 100 %. Minutes without supply or"
            " without readings are not monitored time."
        ),
        _("Limits of this account: nominal %(nominal)s V, from %(lower)s V to %(upper)s V.")
        % {
            "nominal": fixed(first.get("nominal_v"), 2),
            "lower": fixed(first.get("lower_v"), 2),
            "upper": fixed(first.get("upper_v"), 2),
        },
        _(
            "Supply reliability RS-1 (DL/T 836) = (1 − outage time ÷ period) × 100 %%, over the days"
            " this account was monitored in the month (%(first)s to %(last)s). An interruption of"
            " less than %(short)s is short; RS-1 without short interruptions leaves them out."
        )
        % {
            "first": period.get("from") or MISSING,
            "last": period.get("to") or MISSING,
            "short": _("%(n)s seconds") % {"n": fixed(doc.short_outage_s, 0)},
        },
        _(
            "An outage begins and ends where the evidence shows: the meter's power-off and power-on"
            " events, or readings below a tenth of nominal on every phase. Where no event arrived, its"
            " end is the first minute readings show supply again (known from readings), else it is"
            " inferred from the next power-off."
        ),
        _(
            "Supply side: the same figures of the account's feeder over the same days; the gap is"
            " this account minus the feeder, the cost of the last mile."
        ),
        _(
            "EN 50160: in each week, at least 95 %% of the valid 10-minute values must lie within"
            " ±10 %% of nominal on every phase. A week with fewer than %(cov)s of its 10-minute"
            " values is not judged (not enough data), never passed."
        )
        % {"cov": pct((report.get("en50160") or {}).get("min_coverage_pct"), 0)},
        _(
            "Dips and swells are placed on the ITIC (CBEMA) curve and dips on the SEMI F47 curve."
            " Reading coverage is minutes with readings over minutes of the period, all phases;"
            " supply-state coverage is the share of the period whose supply (on or off) is known."
        ),
    ]
    return out


def _sign_off(doc: ReportDoc, styles: _Styles, font: str, _: Gettext) -> Flowable:
    rows = [
        [_("Prepared by (编制)"), "", _("Checked by (审核)"), "", _("Approved by (批准)"), ""],
        [_("Date"), "", _("Date"), "", _("Date"), ""],
    ]
    t = Table(rows, colWidths=[2.6 * cm, 3.1 * cm] * 3, rowHeights=[1.1 * cm, 0.8 * cm])
    t.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), font, 8.5),
                ("TEXTCOLOR", (0, 0), (-1, -1), INK),
                ("LINEBELOW", (1, 0), (1, -1), 0.5, INK),
                ("LINEBELOW", (3, 0), (3, -1), 0.5, INK),
                ("LINEBELOW", (5, 0), (5, -1), 0.5, INK),
                ("VALIGN", (0, 0), (-1, -1), "BOTTOM"),
            ]
        )
    )
    seal = Paragraph(_("(Seal of %(utility)s)") % {"utility": doc.utility}, styles.small)
    return KeepTogether([Paragraph(_("Sign-off"), styles.h2), t, Spacer(1, 0.6 * cm), seal])


def _cover(doc: ReportDoc, styles: _Styles, _: Gettext) -> list[Flowable]:
    report = doc.report
    period = report.get("period") or {}
    facts = [
        (_("Account"), f"{report['name']} ({report['site']})"),
        (_("Period"), f"{report['from']} — {report['to']}"),
        (_("Days monitored"), f"{period.get('from') or MISSING} — {period.get('to') or MISSING}"),
        (_("Feeder"), doc.feeder_name or MISSING),
        (_("Voltage class"), f"{fixed(doc.voltage_class_kv, 2)} kV" if doc.voltage_class_kv else MISSING),
        (_("Report number"), doc.report_no),
        (_("Version"), str(doc.version) if doc.version else _("not issued (made on request)")),
        (_("Issued") if doc.version else _("Made"), doc.issued.isoformat()),
    ]
    out: list[Flowable] = [
        Spacer(1, 3 * cm),
        Paragraph(doc.utility, styles.cover),
        Spacer(1, 0.8 * cm),
        Paragraph(_("Monthly supply-quality report"), styles.h1),
        Spacer(1, 1.5 * cm),
    ]
    t = Table([[k, v] for k, v in facts], colWidths=[4.5 * cm, 9 * cm])
    t.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), styles.body.fontName, 11),
                ("TEXTCOLOR", (0, 0), (-1, -1), INK),
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    out.append(t)
    if doc.provisional:
        out += [
            Spacer(1, 1 * cm),
            Paragraph(
                _("Provisional: the month is not over, and its figures will still change."), styles.cover
            ),
        ]
    if doc.version and doc.version > 1:
        out += [
            Spacer(1, 1 * cm),
            Paragraph(
                _("This version replaces version %(prev)s: late data changed the figures listed at the end.")
                % {"prev": doc.version - 1},
                styles.cover,
            ),
        ]
    out.append(PageBreak())
    return out


def render(doc: ReportDoc) -> bytes:
    """The PDF of one account-month."""
    _ = gettext_for(doc.lang)
    font = font_name()
    styles = _Styles(font)
    report = doc.report
    story: list[Flowable] = _cover(doc, styles, _)

    def section(title: str, *flowables: Flowable) -> None:
        story.append(Paragraph(title, styles.h2))
        story.extend(flowables)

    section(
        _("Headline figures"), _table(headline_rows(report, _), [6 * cm, 3.6 * cm, 3.8 * cm, 3.6 * cm], font)
    )
    phases = phase_rows(report, _)
    width = (17 - 5.5) / max(1, len(phases[0]) - 1)
    section(
        _("Voltage statistics per phase"),
        _table(phases, [5.5 * cm] + [width * cm] * (len(phases[0]) - 1), font),
    )
    outages = outage_rows(report, _)
    section(
        _("Outages"),
        _table(outages, [2.9 * cm, 2.9 * cm, 1.9 * cm, 2.1 * cm, 1.7 * cm, 2.7 * cm, 2.8 * cm], font)
        if len(outages) > 1
        else Paragraph(_("No outages in this period."), styles.body),
    )
    if any(o.get("continued") for o in report.get("outage_list") or []):
        story.append(Paragraph(_("* began before the period; counted in the month it began."), styles.small))

    daily = report.get("daily") or []
    story.append(Paragraph(_("Charts"), styles.h2))
    # Vector drawings (platypus Flowables): text in the embedded font, sharp in print.
    story.append(charts.daily_vqr_chart(daily, doc.vqr_target_pct, _, font=font))
    story.append(charts.envelope_chart(daily, report.get("phases") or {}, _, font=font))
    story.append(
        charts.outage_timeline_chart(report.get("outage_list") or [], *_period_bounds(report), _, font=font)
    )
    story.append(charts.itic_chart(report.get("dips") or [], _, font=font))

    section(
        _("EN 50160 weekly verdicts"),
        _table(week_rows(report, _), [2.6 * cm, 1.4 * cm, 4.2 * cm, 3.2 * cm, 2 * cm, 3.6 * cm], font),
    )
    section(
        _("Power quality"), _table(pq_rows(report, _), [4.4 * cm, 3 * cm, 3 * cm, 3.3 * cm, 3.3 * cm], font)
    )
    section(_("Rules applied"), *(Paragraph(text, styles.body) for text in definitions(doc, _)))
    if doc.changes and doc.version:
        section(
            _("Changes since version %(prev)s") % {"prev": doc.version - 1},
            _table(change_rows(doc.changes, _), [7 * cm, 5 * cm, 5 * cm], font),
        )
    story.append(Spacer(1, 0.4 * cm))
    story.append(_sign_off(doc, styles, font, _))

    out = io.BytesIO()
    footer = f"{doc.utility} · {doc.report_no}" + (f" · v{doc.version}" if doc.version else "")

    def on_page(canvas: Canvas, template: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 7.5)
        canvas.setFillColor(INK)
        canvas.drawString(2 * cm, 1.2 * cm, footer)
        canvas.drawRightString(A4[0] - 2 * cm, 1.2 * cm, _("Page %(n)s") % {"n": canvas.getPageNumber()})
        canvas.restoreState()

    pdf = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=2 * cm,
        rightMargin=2 * cm,
        topMargin=1.8 * cm,
        bottomMargin=2 * cm,
        title=f"{report['name']} {report['from']} — {report['to']}",
        author=doc.utility,
        subject=_("Monthly supply-quality report"),
        creator="pqmon",
    )
    pdf.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return out.getvalue()


def _period_bounds(report: dict[str, Any]) -> tuple[str, str]:
    """The period as ISO local times for the outage timeline's axis."""
    from datetime import datetime, time, timedelta
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(report["tz"])
    start = datetime.combine(date.fromisoformat(report["from"]), time(0), zone)
    end = datetime.combine(date.fromisoformat(report["to"]) + timedelta(days=1), time(0), zone)
    return start.isoformat(), end.isoformat()


def render_to(doc: ReportDoc, path: Path) -> Path:
    """Write atomically: a reader never sees half a PDF."""
    data = render(doc)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path

"""The customer's portal: what a key account's own staff see after signing in.

Plain words, no utility jargon: "voltage within the agreed range 99.9 % of the time", not
"VQR"; their supply line by its name, not a feeder code. One card per account they may see,
this month against the targets, the daily trend, their outages, planned work ahead, and
every issued report with its versions. Built once per page load from the same
``site_report`` as everything else, so the portal and the PDF cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dash_mantine_components as dmc
from dash import dcc, html

from analysis.alerts.subscriptions import subscriptions
from core.errors import PqmonError
from core.registry import Site
from dashboard import authz
from dashboard.context import get_context
from dashboard.fleet_view import RS1_TARGET_PCT
from dashboard.i18n import _, lang, num
from dashboard.report_files import current_report
from reports.archive import Issue, issues
from reports.monthly import month_of, previous_month
from reports.texts import hours_minutes

MISSING = "–"


def _pct(value: float | None, decimals: int = 2) -> str:
    return MISSING if value is None else f"{num(value, decimals)} %"


def verdict(value: float | None, target: float) -> tuple[str, str]:
    """(colour, words) of a figure against its target; no data is said, never a pass."""
    if value is None:
        return "gray", _("no data yet")
    if value >= target:
        return "green", _("meets the target")
    return "red", _("below the target")


def month_sentences(report: dict[str, Any], vqr_target: float) -> list[Any]:
    """This month in two sentences a customer's manager can repeat."""
    vqr, rs1 = report.get("vqr_pct"), report.get("rs1_pct")
    outages = report.get("outages") or {}
    vqr_colour, vqr_words = verdict(vqr, vqr_target)
    rs1_colour, rs1_words = verdict(rs1, RS1_TARGET_PCT)
    count = outages.get("count") or 0
    return [
        dmc.Group(
            [
                dmc.Text(
                    _(
                        "Voltage within the agreed range %(share)s of the time (target %(target)s).",
                        share=_pct(vqr),
                        target=_pct(vqr_target, 1),
                    ),
                    className="portal-vqr",
                ),
                dmc.Badge(vqr_words, color=vqr_colour),
            ],
            gap="xs",
        ),
        dmc.Group(
            [
                dmc.Text(
                    _(
                        "Power available %(share)s of the time (target %(target)s):"
                        " %(count)s interruption(s), %(duration)s in total.",
                        share=_pct(rs1, 3),
                        target=_pct(RS1_TARGET_PCT, 1),
                        count=num(count, 0),
                        duration=hours_minutes(outages.get("duration_s") or 0),
                    ),
                    className="portal-rs1",
                ),
                dmc.Badge(rs1_words, color=rs1_colour),
            ],
            gap="xs",
        ),
    ]


def trend_figure(report: dict[str, Any], vqr_target: float) -> dict[str, Any]:
    """The month's days: the share of time within range, a gap where nothing is known."""
    days = report.get("daily") or []
    known = [d["vqr_pct"] for d in days if d["vqr_pct"] is not None]
    low = min([90.0, vqr_target - 1, *(v - 1 for v in known)])
    return {
        "data": [
            {
                "type": "bar",
                "x": [d["day"][5:] for d in days],  # MM-DD: a category per day, in any language
                "y": [d["vqr_pct"] for d in days],
                "name": _("Within range"),
                "marker": {"color": "#3478c8"},
            }
        ],
        "layout": {
            "height": 220,
            "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
            "xaxis": {"type": "category"},
            "yaxis": {"title": {"text": _("Within range (%)")}, "range": [low, 100.5]},
            "shapes": [
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": vqr_target,
                    "y1": vqr_target,
                    "line": {"dash": "dash", "color": "#888"},
                }
            ],
            "showlegend": False,
        },
    }


def outage_rows(report: dict[str, Any]) -> list[Any]:
    """The month's interruptions: when, how long, planned or not."""
    rows = []
    for o in report.get("outage_list") or []:
        cause = {"planned": _("planned work"), "unplanned": _("unplanned")}.get(
            o["cause"], _("cause not known")
        )
        rows.append(
            html.Tr(
                [
                    html.Td(o["start"][:16].replace("T", " ")),
                    html.Td(
                        _("still going on") if o.get("open") else (o.get("end") or "")[:16].replace("T", " ")
                    ),
                    html.Td(hours_minutes(o.get("duration_s"))),
                    html.Td(cause),
                ]
            )
        )
    if not rows:
        return [dmc.Text(_("No interruptions this month."), size="sm", c="dimmed")]
    head = html.Thead(
        html.Tr([html.Th(_("From")), html.Th(_("To")), html.Th(_("How long")), html.Th(_("Why"))])
    )
    return [dmc.Table([head, html.Tbody(rows)], striped=True, className="portal-outages")]


def planned_ahead(site: Site, now: datetime, tz: str) -> list[Any]:
    """Planned work that will interrupt this account, soonest first."""
    zone = ZoneInfo(tz)
    ahead = sorted(
        (s.replace(tzinfo=UTC), e.replace(tzinfo=UTC))
        for s, e in get_context().registry.planned_outages(site.id)
        if e.replace(tzinfo=UTC) > now
    )
    if not ahead:
        return [dmc.Text(_("No planned work ahead."), size="sm", c="dimmed")]
    return [
        dmc.Text(
            _(
                "From %(start)s to %(end)s",
                start=s.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                end=e.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            ),
            size="sm",
            className="portal-planned",
        )
        for s, e in ahead
    ]


def report_links(site: Site, found: list[Issue], today: date) -> list[Any]:
    """This month so far, last month (issued or not yet), and every issued version."""
    other = "en" if lang() != "en" else "zh-CN"
    here = lang()
    this, last = month_of(today), previous_month(today)
    items = []

    def row(label: str, links: list[Any], row_id: str) -> Any:
        return html.Tr([html.Td(label), html.Td(dmc.Group(links, gap="sm"))], id=row_id)

    def pdf(href: str, text: str, link_id: str | None = None) -> Any:
        if link_id:
            return html.A(text, href=href, download="", className="report-link", id=link_id)
        return html.A(text, href=href, download="", className="report-link")

    base = f"/reports/{site.id}"
    items.append(
        row(
            _("%(month)s so far (provisional)", month=this),
            [
                pdf(f"{base}/{this}/current.{here}.pdf", _("PDF"), f"report-{site.id}-{this}-current"),
                pdf(f"{base}/{this}/current.{other}.pdf", _("PDF (other language)")),
            ],
            f"reports-{site.id}-{this}",
        )
    )
    issued_months = {i.month for i in found}
    if last not in issued_months:
        items.append(
            row(
                _("%(month)s (not issued yet)", month=last),
                [pdf(f"{base}/{last}/current.{here}.pdf", _("PDF"), f"report-{site.id}-{last}-current")],
                f"reports-{site.id}-{last}",
            )
        )
    for i in found:
        issued = datetime.fromtimestamp(i.issued_ms / 1000, get_context().settings.zone).strftime("%Y-%m-%d")
        items.append(
            row(
                _(
                    "%(month)s, version %(version)s, issued %(issued)s",
                    month=i.month,
                    version=i.version,
                    issued=issued,
                ),
                [
                    pdf(
                        f"{base}/{i.month}/v{i.version}.{here}.pdf",
                        _("PDF"),
                        f"report-{site.id}-{i.month}-v{i.version}",
                    ),
                    pdf(f"{base}/{i.month}/v{i.version}.{other}.pdf", _("PDF (other language)")),
                    pdf(f"{base}/{i.month}/v{i.version}.csv", _("CSV")),
                ]
                + (
                    [dmc.Badge(_("replaces version %(v)s", v=i.version - 1), color="orange")]
                    if i.version > 1
                    else []
                ),
                f"reports-{site.id}-{i.month}-v{i.version}",
            )
        )
    return [dmc.Table(html.Tbody(items), className="portal-reports")]


def site_card(site: Site, found: list[Issue], today: date, now: datetime) -> Any:
    ctx = get_context()
    vqr_target = ctx.settings.last_mile_target_vqr_pct
    try:
        report = current_report(site, month_of(today))
    except PqmonError:
        report = {}
    line_name = None
    if site.feeder_id:
        try:
            line_name = ctx.registry.site(site.feeder_id).name
        except PqmonError:
            line_name = None
    return dmc.Paper(
        [
            dmc.Title(site.name, order=2, id=f"portal-name-{site.id}"),
            dmc.Text(
                _("Supplied by the %(line)s line.", line=line_name) if line_name else "",
                size="sm",
                c="dimmed",
            ),
            dmc.Title(_("This month"), order=4, mt="sm"),
            *month_sentences(report, vqr_target),
            dcc.Graph(
                figure=trend_figure(report, vqr_target),
                config={"displayModeBar": False},
                id=f"portal-trend-{site.id}",
            ),
            dmc.Title(_("Interruptions this month"), order=4, mt="sm"),
            *outage_rows(report),
            dmc.Title(_("Planned work ahead"), order=4, mt="sm"),
            *planned_ahead(site, now, ctx.settings.tz),
            dmc.Title(_("Your reports"), order=4, mt="sm"),
            *report_links(site, found, today),
        ],
        p="md",
        mb="lg",
        withBorder=True,
        className="portal-card",
        id=f"portal-{site.id}",
    )


def notification_summary(user: str) -> Any:
    subs = subscriptions(get_context().registry, user)
    text = (
        _("You receive notices on %(n)s channel(s).", n=num(len(subs), 0))
        if subs
        else _("You receive no notices yet.")
    )
    return dmc.Group(
        [dmc.Text(text, size="sm"), dcc.Link(_("Choose how and when you are told"), href="/notifications")],
        gap="sm",
    )


def layout(access: authz.Access) -> Any:
    """The portal of a customer: every account they may see, together."""
    ctx = get_context()
    now = datetime.now(UTC)
    today = now.astimezone(ctx.settings.zone).date()
    sites = access.sites()
    found = issues(ctx.registry, [s.id for s in sites])
    return html.Div(
        [
            html.H1(_("Your supply quality"), id="portal-title"),
            notification_summary(access.user.name),
            html.Div(
                [site_card(s, [i for i in found if i.site_id == s.id], today, now) for s in sites]
                or [dmc.Text(_("No account is linked to your sign-in yet; ask your account manager."))],
                className="portal-cards",
            ),
        ],
        className="page portal",
        id="portal",
    )

"""Reports (``/archive``): every issued monthly report of the accounts a user may see.

A manager signs their accounts' reports and sends them on; operators and administrators see
all. One month at a time: each account's latest version with its earlier ones, and the
month's zip. The table is built from the archive rows the user's Access allows, never from
an id the browser sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dash
import dash_mantine_components as dmc
from dash import Input, Output, html

from dashboard import authz
from dashboard.context import get_context
from dashboard.i18n import N_, _, lang
from dashboard.widgets import message
from reports.archive import Issue, issues
from reports.monthly import MONTH_FORMAT, month_of, previous_month

dash.register_page(__name__, path="/archive", title="pqmon", name="archive", nav=N_("Reports"), order=15)


def months_offered(found: list[Issue], today_month: str, last_month: str) -> list[str]:
    """Months with issued reports, and last month even before its reports are out; newest first."""
    return sorted({i.month for i in found} | {last_month}, reverse=True)[:36] or [today_month]


def month_table(found: list[Issue], names: dict[str, str], month: str) -> Any:
    """One row per account: its versions of ``month``, newest first, each with its downloads."""
    here = lang()
    other = "en" if here != "en" else "zh-CN"
    by_site: dict[str, list[Issue]] = {}
    for i in found:
        if i.month == month:
            by_site.setdefault(i.site_id, []).append(i)
    if not by_site:
        return message(_("No report of %(month)s has been issued yet.", month=month), "archive-empty")
    zone = get_context().settings.zone
    rows = []
    for site_id in sorted(by_site, key=lambda s: names.get(s, s)):
        versions = sorted(by_site[site_id], key=lambda i: -i.version)
        links = []
        for i in versions:
            issued = datetime.fromtimestamp(i.issued_ms / 1000, zone).strftime("%Y-%m-%d")
            base = f"/reports/{site_id}/{month}/v{i.version}"
            links.append(
                dmc.Group(
                    [
                        dmc.Text(_("version %(v)s, %(issued)s", v=i.version, issued=issued), size="sm"),
                        html.A(
                            _("PDF"),
                            href=f"{base}.{here}.pdf",
                            download="",
                            id=f"archive-{site_id}-v{i.version}",
                        ),
                        html.A(_("PDF (other language)"), href=f"{base}.{other}.pdf", download=""),
                        html.A(_("CSV"), href=f"{base}.csv", download=""),
                    ],
                    gap="sm",
                )
            )
        changed = ", ".join(c.get("label") and _(c["label"]) or c["figure"] for c in versions[0].changes)
        rows.append(
            html.Tr(
                [
                    html.Td(f"{names.get(site_id, site_id)} ({site_id})"),
                    html.Td(versions[0].report_no),
                    html.Td(links),
                    html.Td(changed),
                ],
                id=f"archive-row-{site_id}",
            )
        )
    head = html.Thead(
        html.Tr(
            [
                html.Th(_("Account")),
                html.Th(_("Report number")),
                html.Th(_("Versions")),
                html.Th(_("Changed")),
            ]
        )
    )
    return html.Div(
        [
            html.A(
                _("Download the month's reports as one zip"),
                href=f"/reports/month/{month}.zip?lang={here}",
                download="",
                id="archive-zip",
            ),
            dmc.Table([head, html.Tbody(rows)], striped=True, mt="sm", id="archive-table"),
        ]
    )


@authz.page_layout(authz.WORKSPACE)
def layout(access: authz.Access, **_query: str) -> html.Div:
    ctx = get_context()
    today = datetime.now(ctx.settings.zone).date()
    found = issues(ctx.registry, access.site_ids())
    months = months_offered(found, month_of(today), previous_month(today))
    return html.Div(
        [
            html.H1(_("Reports")),
            dmc.Text(
                _(
                    "Each account's monthly report is issued a few hours after the month ends. When late"
                    " data changes a figure, a new version is issued and the earlier ones stay here."
                ),
                size="sm",
                c="dimmed",
                mb="sm",
            ),
            dmc.Select(id="archive-month", label=_("Month"), data=months, value=months[0], w=200),
            html.Div(id="archive-body"),
        ],
        className="page",
    )


@authz.callback(
    Output("archive-body", "children"),
    Input("archive-month", "value"),
    roles=authz.WORKSPACE,
    denied=lambda: message(_("Not found or not permitted.")),
)
def show_month(access: authz.Access, month: object) -> Any:
    if not isinstance(month, str) or not MONTH_FORMAT.match(month):
        return message(_("Not found or not permitted."))
    ctx = get_context()
    found = issues(ctx.registry, access.site_ids(), month)
    names = {s.id: s.name for s in access.sites()}
    return month_table(found, names, month)

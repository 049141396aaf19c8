"""Overview (``/``): the accounts the user may see, worst voltage qualification first."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import dash
import pandas as pd
from dash import Input, Output, html
from dash.dash_table.DataTable import DataTable
from dash.dash_table.Format import Format, Scheme

from analysis.report import fleet_summary
from core.errors import StoreError
from core.registry import ROLES
from dashboard import authz
from dashboard.context import get_context
from dashboard.i18n import N_, _
from dashboard.periods import PeriodError, default_period, parse_period, today
from dashboard.widgets import is_number, message, period_picker

log = logging.getLogger(__name__)

dash.register_page(
    __name__,
    path="/",
    title="pqmon",
    name="overview",
    nav=N_("Overview"),
    order=0,
)

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'
FIGURE_COLUMNS = (("vqr_pct", 2), ("rs1_pct", 3), ("outages", 0), ("coverage_pct", 1))


def _columns() -> list[Any]:  # DataTable column dicts
    def number(col: str, key: str, decimals: int) -> dict[str, Any]:
        return {
            "id": col,
            "name": key,
            "type": "numeric",
            "format": Format(precision=decimals, scheme=Scheme.fixed).nully("–"),
        }

    return [
        {"id": "site_link", "name": _("Account"), "presentation": "markdown"},
        {"id": "name", "name": _("Name")},
        number("vqr_pct", _("VQR %"), 2),
        number("rs1_pct", _("RS-1 %"), 3),
        number("outages", _("Outages"), 0),
        number("coverage_pct", _("Coverage %"), 1),
    ]


@authz.page_layout(ROLES)
def layout(access: authz.Access, **_query: str) -> html.Div:
    tz = get_context().settings.tz
    day_from, day_to = default_period(tz)
    return html.Div(
        [
            html.H1(_("Key accounts")),
            period_picker("overview-dates", day_from, day_to, today(tz)),
            html.Div(id="overview-message"),
            DataTable(
                id="overview-table",
                columns=_columns(),
                data=[],
                sort_action="native",
                markdown_options={"link_target": "_self"},
                style_as_list_view=True,
                style_cell={"textAlign": "right", "padding": "6px 12px", "fontFamily": FONT},
                style_cell_conditional=[
                    {"if": {"column_id": c}, "textAlign": "left"} for c in ("site_link", "name")
                ],
                style_header={"fontWeight": "600", "backgroundColor": "#eef1f4"},
                page_size=50,
            ),
        ],
        className="page overview",
    )


def rows(summary: pd.DataFrame, names: dict[str, str], query: str) -> list[dict[str, Any]]:
    """Table rows of the sites in ``names``, worst VQR first; accounts without data last."""
    out = []
    for rec in summary.to_dict("records"):
        site = str(rec["site"])
        if site not in names:
            continue
        row: dict[str, Any] = {
            "site": site,
            "site_link": f"[{site}](/account/{site}?{query})",
            "name": names.get(site, site),
        }
        for col, _decimals in FIGURE_COLUMNS:
            row[col] = float(rec[col]) if is_number(rec.get(col)) else None
        out.append(row)
    out.sort(key=lambda r: (r["vqr_pct"] is None, r["vqr_pct"] or 0.0, r["site"]))
    return out


@authz.callback(
    Output("overview-table", "data"),
    Output("overview-message", "children"),
    Input("overview-dates", "start_date"),
    Input("overview-dates", "end_date"),
    roles=ROLES,
    denied=lambda: ([], None),
)
def update_table(access: authz.Access, start: object, end: object) -> tuple[list[dict[str, Any]], Any]:
    """The site ids come from the registry for this session's user, never from the browser."""
    try:
        day_from, day_to = parse_period(start, end)
    except PeriodError as exc:
        return [], message(str(exc))
    site_ids = access.site_ids()
    if not site_ids:
        return [], message(_("No accounts are assigned to you."))
    ctx = get_context()
    try:
        accounts = ctx.registry.sites("account")
        commissioned = {s.id: s.commissioned for s in accounts}
        summary = fleet_summary(
            ctx.store, site_ids, day_from, day_to, ctx.settings.tz, commissioned=commissioned
        )
    except StoreError:
        log.exception("fleet summary failed")
        return [], message(_("The measurement store is not answering; try again shortly."))
    names = {s.id: s.name for s in accounts if s.id in site_ids}
    query = urlencode({"from": day_from.isoformat(), "to": day_to.isoformat()})
    return rows(summary, names, query), None

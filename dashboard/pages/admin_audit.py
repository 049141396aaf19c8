"""Administration: the audit log (``/admin/audit``), newest first: who changed what, and the
values before and after."""

from __future__ import annotations

import json
from typing import Any

import dash
import dash_mantine_components as dmc
from dash import html

from dashboard import authz
from dashboard.context import get_context
from dashboard.i18n import _, when
from dashboard.pages.admin import accounts, grid, header

dash.register_page(__name__, path="/admin/audit", title="pqmon", name="admin-audit", order=93)

LIMIT = 2000


def columns() -> list[dict[str, Any]]:
    return [
        {"field": "at", "headerName": _("Time"), "sort": "desc", "maxWidth": 190},
        {"field": "actor", "headerName": _("By"), "maxWidth": 140},
        {"field": "action", "headerName": _("Action"), "maxWidth": 190},
        {"field": "target", "headerName": _("Target"), "maxWidth": 200},
        {"field": "detail", "headerName": _("Detail"), "flex": 3, "wrapText": True, "autoHeight": True},
    ]


def audit_rows() -> list[dict[str, Any]]:
    tz = get_context().settings.tz
    return [
        {
            "at": when(e.at_ms, tz, seconds=True),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "detail": json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else "",
        }
        for e in accounts().audit_log(LIMIT)
    ]


@authz.page_layout(authz.ADMIN)
def layout(access: authz.Access, **_query: str) -> html.Div:
    return html.Div(
        [
            *header("audit", _("Audit log")),
            dmc.Text(_("The latest %(n)s changes, newest first.", n=LIMIT), size="sm"),
            grid("adm-audit-grid", columns(), audit_rows()),
        ],
        className="page admin",
    )

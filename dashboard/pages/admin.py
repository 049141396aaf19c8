"""Shared by the administration pages (dashboard/pages/admin_*.py); not a page itself.

The pages are for administrators only: every layout and every callback declares
``roles=ADMIN``, and every change they make is written to the audit log with who made it.
"""

from __future__ import annotations

import time
from typing import Any

import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import dcc, html

from core.accounts import Accounts
from core.registry import Registry
from dashboard.context import get_context
from dashboard.i18n import N_, _
from dashboard.widgets import forbidden_text, grid_locale

TABS = (
    ("users", N_("Users"), "/admin"),
    ("registry", N_("Registry import"), "/admin/registry"),
    ("planned", N_("Planned outages"), "/admin/planned"),
    ("audit", N_("Audit log"), "/admin/audit"),
)


def registry() -> Registry:
    return get_context().registry


def accounts() -> Accounts:
    return get_context().accounts


def header(active: str, title: str) -> list[Any]:
    """The page title and the links between the administration pages."""
    links = [
        dcc.Link(
            _(label),
            href=href,
            id=f"admin-tab-{key}",
            className="nav-link admin-tab" + (" active" if key == active else ""),
            style={"fontWeight": 600 if key == active else 400, "marginRight": "1rem"},
        )
        for key, label, href in TABS
    ]
    return [html.H1(title), html.Div(links, className="admin-tabs", style={"marginBottom": "1rem"})]


def grid(component_id: str, columns: list[dict[str, Any]], rows: list[dict[str, Any]], **options: Any) -> Any:
    return dag.AgGrid(
        id=component_id,
        columnDefs=columns,
        rowData=rows,
        defaultColDef={"sortable": True, "filter": True, "resizable": True},
        dashGridOptions={
            "localeText": grid_locale(),
            "pagination": True,
            "paginationPageSize": 50,
            "enableCellTextSelection": True,
            "domLayout": "autoHeight",
            **options,
        },
        columnSize="sizeToFit",
        className="ag-theme-alpine",
    )


def success(text: str, component_id: str | None = None) -> Any:
    kwargs = {"id": component_id} if component_id else {}
    return dmc.Alert(text, color="green", className="admin-ok", **kwargs)


def failure(text: str, component_id: str | None = None) -> Any:
    kwargs = {"id": component_id} if component_id else {}
    return dmc.Alert(text, color="red", className="admin-error", **kwargs)


def refused() -> Any:
    """What a refused callback shows (not an administrator, or the session ended)."""
    return failure(forbidden_text())


def stamp() -> int:
    """A new value for a page's 'changed' store, so its tables refresh."""
    return time.time_ns()


def account_options() -> list[dict[str, str]]:
    return [{"value": s.id, "label": f"{s.id} {s.name}"} for s in registry().sites("account")]


def site_options() -> list[dict[str, str]]:
    """Accounts and feeders (a feeder's planned outage covers its accounts)."""
    kinds = {"account": _("account"), "feeder": _("feeder")}
    return [
        {"value": s.id, "label": f"{s.id} {s.name} ({kinds.get(s.kind, s.kind)})"} for s in registry().sites()
    ]

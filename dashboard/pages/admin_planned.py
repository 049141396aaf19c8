"""Administration: planned outages (``/admin/planned``): list, add, move, cancel.

The same operations as ``pqmon planned add|move|cancel`` (analysis.alerts.notices.NoticeBook:
the window, its planned_outage rows and the customer notices change in one transaction), the
days touched marked for the worker to recompute, and every change audited. Times are local
(PQMON_TZ).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, dcc, html

from analysis.alerts.notices import NoticeBook, NoticePolicy
from core.errors import PqmonError
from core.registry import WINDOW_ACTIVE
from dashboard import authz
from dashboard.context import get_context
from dashboard.i18n import _
from dashboard.pages.admin import (
    accounts,
    failure,
    grid,
    header,
    refused,
    registry,
    site_options,
    stamp,
    success,
)

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/admin/planned", title="pqmon", name="admin-planned", order=92)

DONE_STORES = ("adm-pl-add-done", "adm-pl-change-done")


def local_text(naive_utc: datetime) -> str:
    tz = get_context().settings.tz
    return naive_utc.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def parse_local(value: object) -> datetime | None:
    """A local date and time from the picker (or typed ISO text) as naive UTC; None if unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(get_context().settings.tz))
    return moment.astimezone(UTC).replace(tzinfo=None)


def notice_book() -> NoticeBook:
    """As the command line builds it: the [notices] policy of PQMON_ALERTS_FILE, else the defaults."""
    from analysis.alerts.config import load

    settings = get_context().settings
    config = load(settings)
    return NoticeBook(registry(), config.notices or NoticePolicy(tz=settings.tz))


def mark_dirty(sites: tuple[str, ...], spans: list[tuple[datetime, datetime]]) -> None:
    """Outages in the window change between planned and unplanned: the worker recomputes the days."""
    registry().mark_window_dirty(sites, spans, get_context().settings.tz)


def columns() -> list[dict[str, Any]]:
    return [
        {"field": "id", "headerName": _("Id"), "type": "numericColumn", "maxWidth": 90},
        {"field": "site", "headerName": _("Account or feeder")},
        {"field": "start", "headerName": _("Start")},
        {"field": "end", "headerName": _("End")},
        {"field": "state", "headerName": _("State")},
        {"field": "version", "headerName": _("Version"), "type": "numericColumn", "maxWidth": 110},
        {"field": "sites", "headerName": _("Accounts covered"), "flex": 2},
        {"field": "note", "headerName": _("Note"), "flex": 2},
    ]


def window_rows() -> list[dict[str, Any]]:
    states = {WINDOW_ACTIVE: _("planned"), "cancelled": _("cancelled")}
    return [
        {
            "id": w.id,
            "site": w.site_id,
            "start": local_text(w.start_utc),
            "end": local_text(w.end_utc),
            "state": states.get(w.state, w.state),
            "version": w.version,
            "sites": ", ".join(w.sites),
            "note": w.note,
        }
        for w in reversed(registry().planned_windows())
    ]


def window_options() -> list[dict[str, str]]:
    return [
        {"value": str(w.id), "label": f"{w.id}: {w.site_id} {local_text(w.start_utc)}"}
        for w in registry().planned_windows()
        if w.state == WINDOW_ACTIVE
    ]


def picker(component_id: str, label: str) -> Any:
    return dmc.DateTimePicker(
        id=component_id, label=label, valueFormat="YYYY-MM-DD HH:mm", withSeconds=False, clearable=True
    )


@authz.page_layout(authz.ADMIN)
def layout(access: authz.Access, **_query: str) -> html.Div:
    tz = get_context().settings.tz
    return html.Div(
        [
            *header("planned", _("Planned outages")),
            dmc.Text(_("Times are local (%(tz)s).", tz=tz), size="sm"),
            grid("adm-pl-grid", columns(), window_rows()),
            *[dcc.Store(id=store_id, data=0) for store_id in DONE_STORES],
            dmc.SimpleGrid(
                [
                    dmc.Paper(
                        [
                            html.H2(_("New planned outage")),
                            dmc.Select(
                                id="adm-pl-site",
                                label=_("Account or feeder"),
                                data=site_options(),
                                searchable=True,
                            ),
                            picker("adm-pl-start", _("Start")),
                            picker("adm-pl-end", _("End")),
                            dmc.TextInput(id="adm-pl-note", label=_("Note"), inputProps={"maxLength": 200}),
                            dmc.Button(_("Register"), id="adm-pl-add", mt="sm"),
                            html.Div(id="adm-pl-add-msg"),
                        ],
                        p="md",
                        withBorder=True,
                    ),
                    dmc.Paper(
                        [
                            html.H2(_("Move or cancel")),
                            dmc.Select(id="adm-pl-window", label=_("Planned outage"), data=window_options()),
                            picker("adm-pl-new-start", _("New start")),
                            picker("adm-pl-new-end", _("New end")),
                            dmc.Group(
                                [
                                    dmc.Button(_("Move"), id="adm-pl-move"),
                                    dmc.Button(
                                        _("Cancel the outage"),
                                        id="adm-pl-cancel",
                                        color="red",
                                        variant="outline",
                                    ),
                                ],
                                mt="sm",
                            ),
                            html.Div(id="adm-pl-change-msg"),
                        ],
                        p="md",
                        withBorder=True,
                    ),
                ],
                cols={"base": 1, "md": 2},
                mt="md",
            ),
        ],
        className="page admin",
    )


def _span(start: object, end: object) -> tuple[datetime, datetime] | str:
    first, last = parse_local(start), parse_local(end)
    if first is None or last is None:
        return _("Choose a start and an end time.")
    if last <= first:
        return _("The end must be after the start.")
    return first, last


@authz.callback(
    Output("adm-pl-add-msg", "children"),
    Output("adm-pl-add-done", "data"),
    Input("adm-pl-add", "n_clicks"),
    State("adm-pl-site", "value"),
    State("adm-pl-start", "value"),
    State("adm-pl-end", "value"),
    State("adm-pl-note", "value"),
    roles=authz.ADMIN,
    denied=lambda: (refused(), dash.no_update),
    prevent_initial_call=True,
)
def add_window(
    access: authz.Access, _clicks: object, site_id: object, start: object, end: object, note: object
) -> tuple[Any, Any]:
    known = {s.id for s in registry().sites()}
    if not isinstance(site_id, str) or site_id not in known:
        return failure(_("Choose an account or a feeder.")), dash.no_update
    span = _span(start, end)
    if isinstance(span, str):
        return failure(span), dash.no_update
    text = note.strip()[:200] if isinstance(note, str) else ""
    try:
        result = notice_book().register(site_id, span[0], span[1], text)
        mark_dirty(result.sites, [span])
    except PqmonError as exc:
        return failure(_("Nothing was changed: %(reason)s", reason=str(exc))), dash.no_update
    accounts().audit(
        access.user.name,
        "planned.add",
        str(result.window_id),
        site=site_id,
        start=local_text(span[0]),
        end=local_text(span[1]),
        note=text,
        sites=list(result.sites),
    )
    return success(_("Planned outage %(id)s registered.", id=result.window_id), "adm-pl-add-ok"), stamp()


@authz.callback(
    Output("adm-pl-change-msg", "children"),
    Output("adm-pl-change-done", "data"),
    Input("adm-pl-move", "n_clicks"),
    Input("adm-pl-cancel", "n_clicks"),
    State("adm-pl-window", "value"),
    State("adm-pl-new-start", "value"),
    State("adm-pl-new-end", "value"),
    roles=authz.ADMIN,
    denied=lambda: (refused(), dash.no_update),
    prevent_initial_call=True,
)
def change_window(
    access: authz.Access, _move: object, _cancel: object, window: object, start: object, end: object
) -> tuple[Any, Any]:
    active = {str(w.id): w for w in registry().planned_windows() if w.state == WINDOW_ACTIVE}
    before = active.get(window) if isinstance(window, str) else None
    if before is None:
        return failure(_("Choose a planned outage that is not cancelled.")), dash.no_update
    was = {"start": local_text(before.start_utc), "end": local_text(before.end_utc)}
    try:
        if dash.ctx.triggered_id == "adm-pl-cancel":
            result = notice_book().cancel(before.id)
            mark_dirty(result.sites, [(result.start_utc, result.end_utc)])
            accounts().audit(access.user.name, "planned.cancel", str(before.id), site=before.site_id, **was)
            return success(_("Planned outage %(id)s cancelled.", id=before.id)), stamp()
        span = _span(start, end)
        if isinstance(span, str):
            return failure(span), dash.no_update
        result = notice_book().move(before.id, span[0], span[1])
        mark_dirty(result.sites, [(before.start_utc, before.end_utc), span])
    except PqmonError as exc:
        return failure(_("Nothing was changed: %(reason)s", reason=str(exc))), dash.no_update
    accounts().audit(
        access.user.name,
        "planned.move",
        str(before.id),
        site=before.site_id,
        before=was,
        after={"start": local_text(span[0]), "end": local_text(span[1])},
    )
    return success(_("Planned outage %(id)s moved.", id=before.id)), stamp()


@authz.callback(
    Output("adm-pl-grid", "rowData"),
    Output("adm-pl-window", "data"),
    *[Input(store_id, "data") for store_id in DONE_STORES],
    roles=authz.ADMIN,
    denied=lambda: ([], []),
    prevent_initial_call=True,
)
def refresh(access: authz.Access, *_done: object) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return window_rows(), window_options()

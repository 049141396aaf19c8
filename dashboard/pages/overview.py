"""Overview (``/``): the fleet's figures and every key account the user may see, worst first.

Customers see their own accounts, managers their assigned ones, operators and admins all of
them: always ``access.site_ids()``, never an id from the browser. The filters only narrow
that list. The ranking, colours and filters are :mod:`dashboard.fleet_view`'s pure rules.

The sums come from :mod:`dashboard.fleet_data` (grouped InfluxQL sums, shared across users
until the worker's next pass), and a second, small query only for accounts whose registry
commissioning date falls inside the period (their sums start on that day).
"""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any
from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import Input, Output, html
from sqlalchemy import func, select

from analysis.alerts.state import OPEN_STATES, AlertRow
from analysis.period import MonitoredPeriod, commissioning, monitored_period
from core.calendar import day_range_ms
from core.errors import PqmonError
from core.registry import ROLES, Registry, Site
from core.store import InfluxStore
from dashboard import authz, fleet_view, portal
from dashboard.context import get_context
from dashboard.fleet_data import fleet_sums, read_from
from dashboard.fleet_view import RelSums, View, VqSums
from dashboard.i18n import N_, _, num, pct
from dashboard.period_choice import CUSTOM, DEFAULT, LAST_MONTH, THIS_MONTH, TODAY, choose_period
from dashboard.periods import PeriodError, today
from dashboard.widgets import card, grid_locale, message

log = logging.getLogger(__name__)

dash.register_page(
    __name__,
    path="/",
    title="pqmon",
    name="overview",
    nav=N_("Overview"),
    order=0,
)

PERIOD_LABELS = (
    (TODAY, N_("Today")),
    (THIS_MONTH, N_("This month")),
    (LAST_MONTH, N_("Last month")),
    (CUSTOM, N_("Custom")),
)
# Rounding of the figures sent to the grid (the CSV has the same values).
ROUND = {"vqr_pct": 3, "rs1_pct": 4, "coverage_pct": 2, "gap_pct": 3, "outage_min": 1, "score": 2}


# -- assembling the view ---------------------------------------------------------------------
def _periods(
    accounts: list[Site], first: dict[str, date], day_from: date, day_to: date, tz: str, now_ms: int
) -> dict[str, MonitoredPeriod]:
    memo: dict[tuple[date | None, str | None], MonitoredPeriod] = {}
    out = {}
    for site in accounts:
        key = commissioning(site.commissioned, first.get(site.id))
        if key not in memo:
            memo[key] = monitored_period(key[0], key[1], day_from, day_to, tz, now_ms)
        out[site.id] = memo[key]
    return out


def build_view(
    store: InfluxStore,
    registry: Registry,
    access: authz.Access,
    day_from: date,
    day_to: date,
    tz: str,
    vqr_target: float,
    now_ms: int | None = None,
) -> View:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    allowed = set(access.site_ids())
    everything = registry.sites()
    accounts = [s for s in everything if s.kind == "account" and s.id in allowed]
    feeders_all = [s for s in everything if s.kind == "feeder"]
    if access.role in authz.STAFF:
        feeders = feeders_all
    else:
        mine = {s.feeder_id for s in accounts if s.feeder_id}
        feeders = [f for f in feeders_all if f.id in mine]
    wanted = {s.id for s in accounts} | {f.id for f in feeders}
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    data = fleet_sums(get_context(), start_ms, end_ms, tz, wanted)
    periods = _periods(accounts, data.first, day_from, day_to, tz, now_ms)

    # Accounts whose monitored life starts inside the period: their sums (and their feeder's,
    # for a like-for-like gap) from that day on.
    late: dict[int, set[str]] = {}
    for site in accounts:
        p = periods[site.id]
        if p.first_day is not None and p.start_ms > start_ms and p.commissioned_from == "registry":
            late.setdefault(p.start_ms, set()).update(
                {site.id, *([site.feeder_id] if site.feeder_id else [])}
            )
    from_start = read_from(store, late, end_ms)

    feeder_vqr = {f.id: data.vq[f.id].vqr_pct if f.id in data.vq else None for f in feeders}
    query = urlencode({"from": day_from.isoformat(), "to": day_to.isoformat()})
    alerts = open_alerts_by_site(registry)
    vq_used: dict[str, VqSums] = {}
    rel_used: dict[str, RelSums] = {}
    seconds, feeder_of = [], []
    for site in accounts:
        p = periods[site.id]
        vq_src, rel_src = data.vq, data.rel
        if p.first_day is None:
            vq_src, rel_src = {}, {}
        elif p.start_ms in from_start and site.id in late.get(p.start_ms, ()):
            vq_src, rel_src = from_start[p.start_ms]
        vq_used[site.id] = vq_src.get(site.id, VqSums())
        rel_used[site.id] = rel_src.get(site.id, RelSums())
        fsums = vq_src.get(site.feeder_id) if site.feeder_id else None
        seconds.append(p.seconds)
        feeder_of.append(fsums.vqr_pct if fsums else None)
    rows = fleet_view.account_rows(
        accounts,
        [vq_used[s.id] for s in accounts],
        [rel_used[s.id] for s in accounts],
        seconds,
        feeder_of,
        [alerts.get(s.id, 0) for s in accounts],
        vqr_target,
        query,
        rounding=ROUND,
    )
    data.vq.update(vq_used)
    data.rel.update(rel_used)
    period_h = max(0, min(end_ms, now_ms) - start_ms) / 3_600_000
    return View(
        rows=rows,  # ranked, figures rounded as shown
        feeders=feeders,
        feeder_vqr=feeder_vqr,
        data=data,
        period_s={s: p.seconds for s, p in periods.items()},
        period_h=period_h,
    )


def open_alerts_by_site(registry: Registry) -> dict[str, int]:
    """Open (firing or acknowledged) alerts per site: one grouped query."""
    q = (
        select(AlertRow.site_id, func.count())
        .where(AlertRow.state.in_(OPEN_STATES))
        .group_by(AlertRow.site_id)
    )
    with registry._session() as s:
        return {str(site): int(n) for site, n in s.execute(q).all()}


# -- layout ----------------------------------------------------------------------------------
def _number(field_name: str, header: str, decimals: int, status_field: str | None = None) -> dict[str, Any]:
    col: dict[str, Any] = {
        "field": field_name,
        "headerName": header,
        "type": "rightAligned",
        "filter": "agNumberColumnFilter",
        "valueFormatter": {
            "function": f"params.value == null ? '–' : d3.format(',.{decimals}f')(params.value)"
        },
    }
    if status_field:
        col["cellStyle"] = fleet_view.cell_style(status_field)
    return col


def account_columns() -> list[dict[str, Any]]:
    """The accounts grid's columns; headers translated (the CSV uses them too)."""
    s = fleet_view.STATUS_FIELDS
    return [
        {"field": "site", "headerName": _("Account"), "hide": True},
        {
            "field": "site_link",
            "headerName": _("Account"),
            "cellRenderer": "markdown",
            "linkTarget": "_self",
            "pinned": "left",
            "width": 110,
        },
        {"field": "name", "headerName": _("Name"), "filter": True, "minWidth": 180},
        {"field": "feeder", "headerName": _("Feeder"), "filter": True, "width": 110},
        {"field": "manager", "headerName": _("Manager"), "filter": True, "width": 120},
        _number("voltage_kv", _("Voltage class (kV)"), 2),
        _number("vqr_pct", _("VQR %"), 2, s["vqr_pct"]),
        _number("rs1_pct", _("RS-1 %"), 3, s["rs1_pct"]),
        _number("outages", _("Outages"), 0),
        _number("outage_min", _("Outage minutes"), 1),
        _number("gap_pct", _("Last-mile gap (points)"), 2, s["gap_pct"]),
        _number("coverage_pct", _("Coverage %"), 1, s["coverage_pct"]),
        _number("open_alerts", _("Open alerts"), 0, s["open_alerts"]),
        _number("score", _("Attention score"), 1),
    ]


EXPORT_COLUMNS = (
    "site",
    "name",
    "feeder",
    "manager",
    "voltage_kv",
    "vqr_pct",
    "rs1_pct",
    "outages",
    "outage_min",
    "gap_pct",
    "coverage_pct",
    "open_alerts",
    "score",
)


def feeder_columns() -> list[dict[str, Any]]:
    return [
        {"field": "feeder", "headerName": _("Feeder"), "width": 120},
        {"field": "name", "headerName": _("Name"), "minWidth": 180},
        _number("vqr_pct", _("Supply-side VQR %"), 2),
        _number("accounts", _("Accounts"), 0),
        {"field": "account_ids", "headerName": _("Account ids"), "flex": 1, "minWidth": 200},
    ]


def help_text(vqr_target: float) -> str:
    return _(
        "Worst first by an attention score: 10 points per point of VQR below %(vqr)s %%, 100 per point"
        " of RS-1 below %(rs1)s %%, 5 per open alert and 0.5 per point of coverage below %(cov)s %%"
        " (no data counts as no coverage). An account needs attention when its score is above 0."
        " Colours: green meets the target, amber is close, red is below.",
        vqr=num(vqr_target, 1),
        rs1=num(fleet_view.RS1_TARGET_PCT, 1),
        cov=num(fleet_view.COVERAGE_TARGET_PCT, 0),
    )


def _options(values: list[str], suffix: str = "") -> list[dict[str, str]]:
    return [{"value": v, "label": v + suffix} for v in values]


@authz.page_layout(ROLES)
def layout(access: authz.Access, **_query: str) -> html.Div:
    if access.role == "customer":  # a customer lands on their own accounts, in plain words
        return portal.layout(access)
    ctx = get_context()
    tz = ctx.settings.tz
    opts = fleet_view.filter_options(access.sites())
    now_day = today(tz)
    grid_options = {"localeText": grid_locale(), "animateRows": False, "suppressCellFocus": True}
    return html.Div(
        [
            html.H1(_("Key accounts")),
            dmc.Group(
                [
                    dmc.SegmentedControl(
                        id="overview-period",
                        data=[{"value": v, "label": _(label)} for v, label in PERIOD_LABELS],
                        value=DEFAULT,
                    ),
                    html.Div(
                        dmc.DatePickerInput(
                            id="overview-custom",
                            type="range",
                            value=[now_day.replace(day=1).isoformat(), now_day.isoformat()],
                            maxDate=now_day.isoformat(),
                            valueFormat="YYYY-MM-DD",
                            firstDayOfWeek=1,
                            placeholder=_("Choose the first and the last day"),
                            w=260,
                        ),
                        id="overview-custom-box",
                        style={"display": "none"},
                    ),
                ],
                gap="md",
                mb="sm",
            ),
            dmc.Group(
                [
                    dmc.MultiSelect(
                        id="overview-manager",
                        label=_("Manager"),
                        data=_options(opts["managers"]),
                        value=[],
                        clearable=True,
                        searchable=True,
                        w=220,
                    ),
                    dmc.MultiSelect(
                        id="overview-feeder",
                        label=_("Feeder"),
                        data=_options(opts["feeders"]),
                        value=[],
                        clearable=True,
                        searchable=True,
                        w=220,
                    ),
                    dmc.MultiSelect(
                        id="overview-class",
                        label=_("Voltage class"),
                        data=_options(opts["classes"], " kV"),
                        value=[],
                        clearable=True,
                        w=180,
                    ),
                    dmc.Switch(id="overview-attention", label=_("Needs attention only"), checked=False),
                ],
                align="flex-end",
                gap="md",
                mb="sm",
            ),
            html.Div(id="overview-message"),
            html.Div(id="overview-cards", className="cards"),
            dmc.Group(
                [
                    dmc.Text(
                        help_text(ctx.settings.last_mile_target_vqr_pct),
                        size="xs",
                        c="dimmed",
                        style={"flex": 1},
                    ),
                    dmc.Button(
                        _("Export CSV"),
                        id="overview-export",
                        variant="light",
                        size="xs",
                        style={"flexShrink": 0},
                    ),
                ],
                justify="space-between",
                wrap="nowrap",
                mb="xs",
            ),
            dag.AgGrid(
                id="overview-grid",
                columnDefs=account_columns(),
                rowData=[],
                defaultColDef={"sortable": True, "resizable": True},
                dashGridOptions={**grid_options, "pagination": True, "paginationPageSize": 50},
                getRowId="params.data.site",
                csvExportParams={"fileName": "pqmon-accounts.csv", "columnKeys": list(EXPORT_COLUMNS)},
                style={"height": "520px"},
                className="ag-theme-alpine",
            ),
            html.H2(_("Feeders"), style={"fontSize": "1.1rem", "marginTop": "1.5rem"}),
            dag.AgGrid(
                id="overview-feeders",
                columnDefs=feeder_columns(),
                rowData=[],
                defaultColDef={"sortable": True, "resizable": True},
                dashGridOptions={**grid_options, "pagination": True, "paginationPageSize": 20},
                getRowId="params.data.feeder",
                style={"height": "360px"},
                className="ag-theme-alpine",
            ),
        ],
        className="page overview",
    )


# -- callbacks -------------------------------------------------------------------------------
def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key, places in ROUND.items():
        if isinstance(out.get(key), float):
            out[key] = round(out[key], places)
    return out


def cards(figures: fleet_view.FleetFigures, vqr_target: float) -> list[Any]:
    def colour(value: object, target: float, band: float) -> str | None:
        state = fleet_view.status(value, target, band)
        return {"red": "red", "amber": "orange", "green": "green"}.get(state or "")

    return [
        card(
            _("Pooled VQR"),
            pct(figures.vqr_pct, 2),
            _("target %(target)s", target=pct(vqr_target, 1)),
            "overview-vqr",
            colour(figures.vqr_pct, vqr_target, fleet_view.VQR_AMBER_PP),
        ),
        card(
            _("Pooled RS-1"),
            pct(figures.rs1_pct, 3),
            _("target %(target)s", target=pct(fleet_view.RS1_TARGET_PCT, 1)),
            "overview-rs1",
            colour(figures.rs1_pct, fleet_view.RS1_TARGET_PCT, fleet_view.RS1_AMBER_PP),
        ),
        card(_("SAIFI"), num(figures.saifi, 3), _("interruptions per account"), "overview-saifi"),
        card(_("SAIDI"), num(figures.saidi_min, 1), _("minutes per account"), "overview-saidi"),
        card(_("Outages"), num(figures.outages, 0), "", "overview-outages"),
        card(
            _("Open alerts"),
            num(figures.open_alerts, 0),
            _("%(n)s accounts", n=num(figures.accounts, 0)),
            "overview-alerts",
            "red" if figures.open_alerts else "green",
        ),
    ]


def _denied() -> tuple[Any, ...]:
    return [], [], [], None, dash.no_update


@authz.callback(
    Output("overview-cards", "children"),
    Output("overview-grid", "rowData"),
    Output("overview-feeders", "rowData"),
    Output("overview-message", "children"),
    Output("overview-custom-box", "style"),
    Input("overview-period", "value"),
    Input("overview-custom", "value"),
    Input("overview-manager", "value"),
    Input("overview-feeder", "value"),
    Input("overview-class", "value"),
    Input("overview-attention", "checked"),
    roles=ROLES,
    denied=_denied,
)
def update_overview(
    access: authz.Access,
    choice: object,
    custom: object,
    managers: object,
    feeders: object,
    classes: object,
    attention: object,
) -> tuple[Any, ...]:
    """Everything from the session's accounts; the browser's values only narrow them."""
    ctx = get_context()
    tz = ctx.settings.tz
    custom_style = {"display": "block" if choice == CUSTOM else "none"}
    try:
        day_from, day_to = choose_period(choice, custom, today(tz))
    except PeriodError as exc:
        return [], [], [], message(str(exc)), custom_style
    if not access.site_ids():
        return [], [], [], message(_("No accounts are assigned to you.")), custom_style
    vqr_target = ctx.settings.last_mile_target_vqr_pct
    try:
        view = build_view(ctx.store, ctx.registry, access, day_from, day_to, tz, vqr_target)
    except PqmonError:
        log.exception("overview failed")
        return (
            [],
            [],
            [],
            message(_("The measurement store is not answering; try again shortly.")),
            custom_style,
        )
    selected = fleet_view.select_rows(view.rows, managers, feeders, classes)
    figures = fleet_view.fleet_figures(
        selected,
        view.data.vq,
        view.data.rel,
        view.period_s,
        view.data.outages,
        sum(r["open_alerts"] for r in selected),
        view.period_h,
    )
    shown = fleet_view.attention_only(selected, attention)
    if fleet_view.any_filter(managers, feeders, classes) or access.role not in authz.STAFF:
        supplying = {r["feeder"] for r in selected if r["feeder"]}
        feeder_list = [f for f in view.feeders if f.id in supplying]
    else:
        feeder_list = view.feeders
    feeder_rows = fleet_view.feeder_rows(feeder_list, selected, view.feeder_vqr)
    note = None
    if not shown:
        note = message(_("No account matches the filters."))
    return (
        cards(figures, vqr_target),
        shown,
        [_rounded(r) for r in feeder_rows],
        note,
        custom_style,
    )


@authz.callback(
    Output("overview-grid", "exportDataAsCsv"),
    Input("overview-export", "n_clicks"),
    roles=ROLES,
    prevent_initial_call=True,
    denied=lambda: False,
)
def export_csv(access: authz.Access, clicks: object) -> bool:
    """The grid exports what it holds (the user's rows) with its translated headers."""
    return bool(clicks)

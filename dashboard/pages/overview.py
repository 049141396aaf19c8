"""Overview (``/``): the fleet's figures and every key account the user may see, worst first.

Customers see their own accounts, managers their assigned ones, operators and admins all of
them: always ``access.site_ids()``, never an id from the browser. The filters only narrow
that list. The ranking, colours and filters are :mod:`dashboard.fleet_view`'s pure rules.

The store is asked for sums, not daily rows: one round trip of four grouped InfluxQL
statements (``SUM ... GROUP BY site``), and a second, small one only for accounts whose
registry commissioning date falls inside the period (their sums start on that day). So the
callback's cost grows with the number of accounts, not with their days.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any
from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import Input, Output, html
from sqlalchemy import func, select

from analysis.alerts.state import OPEN_STATES, AlertRow
from analysis.calendar import day_range_ms, local_day
from analysis.period import MonitoredPeriod, commissioning, monitored_period
from analysis.worker import LAST_PASS_KEY
from core.errors import PqmonError
from core.lineproto import quote_literal
from core.registry import ROLES, Registry, Site
from core.store import InfluxStore
from dashboard import authz, fleet_view
from dashboard.context import get_context
from dashboard.fleet_view import FleetData, RelSums, View, VqSums
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

SITE_FILTER_MAX = 64  # up to this many sites are named in the query; more are filtered here
PERIOD_LABELS = (
    (TODAY, N_("Today")),
    (THIS_MONTH, N_("This month")),
    (LAST_MONTH, N_("Last month")),
    (CUSTOM, N_("Custom")),
)
# Rounding of the figures sent to the grid (the CSV has the same values).
ROUND = {"vqr_pct": 3, "rs1_pct": 4, "coverage_pct": 2, "gap_pct": 3, "outage_min": 1, "score": 2}


# -- reading the store -----------------------------------------------------------------------
def _site_clause(site_ids: Iterable[str] | None) -> str:
    if site_ids is None:
        return ""
    ids = sorted(set(site_ids))
    if not ids:
        return " AND site = ''"
    return " AND (" + " OR ".join(f"site = {quote_literal(s)}" for s in ids) + ")"


def _series(results: list[dict[str, Any]], index: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(site, first row as a column dict) of every series of statement ``index``."""
    for result in results:
        if result.get("statement_id", 0) != index:
            continue
        for series in result.get("series", []):
            site = series.get("tags", {}).get("site")
            values = series.get("values") or []
            if site and values:
                yield site, dict(zip(series["columns"], values[0], strict=False))


def _f(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def _sum_statements(rng: str, where: str) -> list[str]:
    return [
        "SELECT sum(monitored_min) AS monitored, sum(over_min) AS over, sum(under_min) AS under,"
        " max(channels) AS channels"
        f" FROM vq_daily WHERE phase = 'all' AND {rng}{where} GROUP BY site",
        "SELECT sum(outage_s) AS outage_s, sum(outages_sustained) AS sustained,"
        f" sum(outages_short) AS short FROM rel_daily WHERE {rng}{where} GROUP BY site",
    ]


Sums = tuple[dict[str, VqSums], dict[str, RelSums]]


def _parse_sums(results: list[dict[str, Any]], offset: int = 0) -> Sums:
    vq = {
        site: VqSums(
            monitored_min=_f(row, "monitored"),
            over_min=_f(row, "over"),
            under_min=_f(row, "under"),
            channels=_f(row, "channels") or 1.0,
            rows=1,  # InfluxDB answers a series only for a site with rows
        )
        for site, row in _series(results, offset)
    }
    rel = {
        site: RelSums(
            outage_s=_f(row, "outage_s"),
            outages=_f(row, "sustained") + _f(row, "short"),
            rows=1,
        )
        for site, row in _series(results, offset + 1)
    }
    return vq, rel


def read_fleet(
    store: InfluxStore, start_ms: int, end_ms: int, tz: str, site_ids: Iterable[str] | None
) -> FleetData:
    """One round trip: vq and rel sums per site, first data day per site, interruptions.

    ``site_ids`` None: every site in the store (filtered by the caller).
    """
    rng = f"time >= {start_ms}ms AND time < {end_ms}ms"
    where = _site_clause(site_ids)
    statements = [
        *_sum_statements(rng, where),
        f"SELECT first(calendar_min) FROM vq_daily WHERE phase = 'all'{where} GROUP BY site",
        f'SELECT start_ms, duration_s FROM outage WHERE "valid" = true AND {rng}{where} GROUP BY site',
    ]
    results = store.query_raw("; ".join(statements))
    data = FleetData()
    data.vq, data.rel = _parse_sums(results)
    for result in results:
        if result.get("statement_id") == 2:
            for series in result.get("series", []):
                site, values = series.get("tags", {}).get("site"), series.get("values") or []
                if site and values:
                    data.first[site] = local_day(int(values[0][0]), tz)
        if result.get("statement_id") == 3:
            for series in result.get("series", []):
                site = series.get("tags", {}).get("site")
                cols = series["columns"]
                i_start, i_dur = cols.index("start_ms"), cols.index("duration_s")
                for v in series.get("values") or []:
                    if site and v[i_start] is not None and v[i_dur] is not None:
                        data.outages.append((site, int(v[i_start]), float(v[i_dur])))
    return data


def fleet_sums(
    store: InfluxStore, registry: Registry, start_ms: int, end_ms: int, tz: str, wanted: set[str]
) -> FleetData:
    """A few sites: asked of the store by name. Many: the fleet's sums, shared across users
    until the worker's next pass (dashboard.rollup_cache), then narrowed by the caller."""
    if len(wanted) <= SITE_FILTER_MAX:
        return read_fleet(store, start_ms, end_ms, tz, wanted)
    version = registry.get_state(LAST_PASS_KEY) or ""
    shared: FleetData = get_context().rollups.get(
        ("fleet", start_ms, end_ms, tz, version), lambda: read_fleet(store, start_ms, end_ms, tz, None)
    )
    # build_view replaces entries of its own copy; the shared sums themselves are never changed.
    return FleetData(dict(shared.vq), dict(shared.rel), dict(shared.first), list(shared.outages))


def read_from(store: InfluxStore, starts: dict[int, set[str]], end_ms: int) -> dict[int, Sums]:
    """Sums from each given start (a commissioning day inside the period) for the named sites."""
    if not starts:
        return {}
    order = sorted(starts)
    statements: list[str] = []
    for start_ms in order:
        rng = f"time >= {start_ms}ms AND time < {end_ms}ms"
        statements += _sum_statements(rng, _site_clause(starts[start_ms]))
    results = store.query_raw("; ".join(statements))
    return {start_ms: _parse_sums(results, 2 * i) for i, start_ms in enumerate(order)}


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
    data = fleet_sums(store, registry, start_ms, end_ms, tz, wanted)
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
    rows = []
    vq_used: dict[str, VqSums] = {}
    rel_used: dict[str, RelSums] = {}
    for site in accounts:
        p = periods[site.id]
        vq_src, rel_src = data.vq, data.rel
        if p.first_day is None:
            vq_src, rel_src = {}, {}
        elif p.start_ms in from_start and site.id in late.get(p.start_ms, ()):
            vq_src, rel_src = from_start[p.start_ms]
        vq = vq_src.get(site.id, VqSums())
        rel = rel_src.get(site.id, RelSums())
        vq_used[site.id], rel_used[site.id] = vq, rel
        fsums = vq_src.get(site.feeder_id) if site.feeder_id else None
        rows.append(
            fleet_view.account_row(
                site,
                vq,
                rel,
                p.seconds,
                fsums.vqr_pct if fsums else None,
                alerts.get(site.id, 0),
                vqr_target,
                query,
            )
        )
    data.vq.update(vq_used)
    data.rel.update(rel_used)
    period_h = max(0, min(end_ms, now_ms) - start_ms) / 3_600_000
    return View(
        rows=fleet_view.ranked(rows),
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
                    dmc.Text(help_text(ctx.settings.last_mile_target_vqr_pct), size="xs", c="dimmed"),
                    dmc.Button(_("Export CSV"), id="overview-export", variant="light", size="xs"),
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
        [_rounded(r) for r in shown],
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

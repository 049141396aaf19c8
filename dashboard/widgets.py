"""Small pieces every page shares: period picker, messages, cards, number checks."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import dash_mantine_components as dmc
from dash import dcc, html

from dashboard.i18n import _, lang

FORBIDDEN_ID = "page-forbidden"


def period_picker(component_id: str, day_from: date, day_to: date, max_day: date) -> html.Div:
    return html.Div(
        [
            html.Label(_("Period"), htmlFor=component_id, className="period-label"),
            dcc.DatePickerRange(
                id=component_id,
                start_date=day_from.isoformat(),
                end_date=day_to.isoformat(),
                max_date_allowed=max_day.isoformat(),
                display_format="YYYY-MM-DD",
                first_day_of_week=1,
                persistence=False,
                start_date_placeholder_text=_("Start"),
                end_date_placeholder_text=_("End"),
            ),
        ],
        className="period",
    )


def message(text: str, component_id: str | None = None) -> html.P:
    if component_id:
        return html.P(text, className="message", id=component_id)
    return html.P(text, className="message")


def forbidden_text() -> str:
    return _("Not found or not permitted.")


def forbidden_page(component_id: str = FORBIDDEN_ID) -> html.Div:
    """One answer for 'no such thing' and 'not yours', so ids cannot be probed."""
    return html.Div(
        [message(forbidden_text(), component_id), dcc.Link(_("Back to the overview"), href="/")],
        className="page",
    )


def card(
    label: str, value: str, detail: Any = "", card_id: str | None = None, colour: str | None = None
) -> Any:
    """A headline figure; ``colour`` is a Mantine colour name for the value (against target)."""
    style: dict[str, Any] = {"fz": 26, "fw": 600}
    if colour:  # Mantine refuses a null colour: leave the prop out instead
        style["c"] = colour
    if card_id:
        style["id"] = card_id
    return dmc.Paper(
        [
            dmc.Text(label, size="xs", c="dimmed", tt="uppercase"),
            dmc.Text(value, **style),
            dmc.Text(detail, size="xs", c="dimmed"),
        ],
        p="sm",
        withBorder=True,
        radius="md",
        className="card",
    )


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def grid_locale() -> dict[str, str]:
    """AG Grid's own texts (filter menus, paging) in the request's language."""
    if lang() != "zh-CN":
        return {}
    return {
        "page": "页",
        "more": "更多",
        "to": "至",
        "of": "共",
        "next": "下一页",
        "last": "末页",
        "first": "首页",
        "previous": "上一页",
        "loadingOoo": "加载中…",
        "noRowsToShow": "无数据",
        "filterOoo": "筛选…",
        "equals": "等于",
        "notEqual": "不等于",
        "contains": "包含",
        "notContains": "不包含",
        "startsWith": "开头是",
        "endsWith": "结尾是",
        "lessThan": "小于",
        "greaterThan": "大于",
        "lessThanOrEqual": "小于等于",
        "greaterThanOrEqual": "大于等于",
        "inRange": "介于",
        "blank": "空白",
        "notBlank": "非空白",
        "andCondition": "且",
        "orCondition": "或",
        "applyFilter": "应用",
        "resetFilter": "重置",
        "clearFilter": "清除",
        "pageSizeSelectorLabel": "每页行数：",
        "ariaPageSizeSelectorLabel": "每页行数",
        "sortAscending": "升序",
        "sortDescending": "降序",
    }

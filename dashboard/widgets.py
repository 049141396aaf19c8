"""Small pieces several pages share: the period picker, messages, number formatting."""

from __future__ import annotations

import math
from datetime import date

from dash import dcc, html

from dashboard.i18n import t


def period_picker(component_id: str, day_from: date, day_to: date, max_day: date) -> html.Div:
    return html.Div(
        [
            html.Label(t("period.label"), htmlFor=component_id, className="period-label"),
            dcc.DatePickerRange(
                id=component_id,
                start_date=day_from.isoformat(),
                end_date=day_to.isoformat(),
                max_date_allowed=max_day.isoformat(),
                display_format="YYYY-MM-DD",
                first_day_of_week=1,
                persistence=False,
            ),
        ],
        className="period",
    )


def message(text: str, component_id: str | None = None) -> html.P:
    if component_id:
        return html.P(text, className="message", id=component_id)
    return html.P(text, className="message")


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: object, decimals: int) -> str:
    """A figure for display, or the missing-value dash."""
    return f"{value:.{decimals}f}" if is_number(value) else t("value.missing")

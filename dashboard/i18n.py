"""Every user-visible string of the dashboard, in one table per language.

Pages call :func:`t` with a key, so adding Chinese is adding one dictionary.
"""

from __future__ import annotations

DEFAULT_LANG = "en"

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "app.title": "pqmon",
        "nav.overview": "Overview",
        "nav.logout": "Log out",
        "nav.user": "{name} ({role})",
        "role.admin": "administrator",
        "role.manager": "account manager",
        "role.operator": "operator",
        "role.customer": "customer",
        "login.title": "Sign in to pqmon",
        "login.name": "User name",
        "login.password": "Password",
        "login.submit": "Sign in",
        "login.failed": "Wrong user name or password.",
        "login.throttled": ("Too many failed sign-in attempts. Try again in {minutes} minute(s)."),
        "login.expired": "The sign-in form expired. Please try again.",
        "period.label": "Period",
        "period.invalid": "Choose a start and an end date, the start not after the end.",
        "period.too_long": "Choose a period of at most {days} days.",
        "store.unavailable": "The measurement store is not answering; try again shortly.",
        "overview.title": "Key accounts",
        "overview.none": "No accounts are assigned to you.",
        "overview.col.site": "Account",
        "overview.col.name": "Name",
        "overview.col.vqr": "VQR %",
        "overview.col.rs1": "RS-1 %",
        "overview.col.outages": "Outages",
        "overview.col.coverage": "Coverage %",
        "account.title": "Account {site_id}: {name}",
        "account.forbidden": "Account not found or not permitted.",
        "account.back": "Back to the overview",
        "account.vqr": "Voltage qualification rate",
        "account.rs1": "Supply reliability RS-1",
        "account.rs1_excl_short": "RS-1 without short interruptions",
        "account.outages": "Outages",
        "account.outage_detail": "{sustained} sustained, {short} short, {planned} planned",
        "account.coverage": "Data coverage",
        "account.minutes": "Monitored {monitored} min, over {over} min, under {under} min",
        "account.supply_side": "Supply side ({feeder})",
        "account.phases": "Phase",
        "account.monitored_col": "Monitored min",
        "account.over_col": "Over min",
        "account.under_col": "Under min",
        "account.trend": "Phase voltages (mean per {bucket})",
        "account.no_readings": "No readings in this period.",
        "account.limit_upper": "upper limit {value:.2f} V",
        "account.limit_lower": "lower limit {value:.2f} V",
        "account.voltage_axis": "Voltage (V)",
        "account.time_axis": "Local time ({tz})",
        "value.missing": "–",
    },
}


def t(key: str, lang: str = DEFAULT_LANG, **values: object) -> str:
    """The text for ``key`` in ``lang`` (English if missing), formatted with ``values``."""
    table = STRINGS.get(lang, STRINGS[DEFAULT_LANG])
    text = table.get(key) or STRINGS[DEFAULT_LANG][key]
    return text.format(**values) if values else text

"""From a report JSON to a printable document: numbering, the issuer, the account's facts.

The figures are always ``analysis.report.site_report``'s; this module only adds what the
paper needs around them.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from core.errors import PqmonError
from core.registry import Registry
from core.settings import Settings
from reports.pdf import ReportDoc
from reports.texts import gettext_for

MONTH_FORMAT = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def month_days(month: str) -> tuple[date, date]:
    """``2026-11`` -> (2026-11-01, 2026-11-30)."""
    try:
        first = datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise PqmonError(f"month {month!r}: write it as YYYY-MM, e.g. 2026-11") from None
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def month_of(day: date) -> str:
    return f"{day:%Y-%m}"


def previous_month(today: date) -> str:
    first = today.replace(day=1)
    return month_of(date.fromordinal(first.toordinal() - 1))


def report_number(site_id: str, day_from: date, day_to: date) -> str:
    """``PQ-202611-A001`` for a calendar month, else ``PQ-20261103-20261109-A001``."""
    if (day_from, day_to) == month_days(month_of(day_from)):
        return f"PQ-{day_from:%Y%m}-{site_id}"
    return f"PQ-{day_from:%Y%m%d}-{day_to:%Y%m%d}-{site_id}"


def utility_name(settings: Settings, lang: str) -> str:
    _ = gettext_for(lang)
    return settings.utility_name or _("Power supply company")


def document(
    report: dict[str, Any],
    registry: Registry,
    settings: Settings,
    lang: str,
    today: date,
    *,
    version: int | None = None,
    changes: Sequence[dict[str, Any]] = (),
    issued: date | None = None,
) -> ReportDoc:
    """The printable document of a report; ``today`` (local) decides whether it is provisional."""
    site = registry.site(report["site"])
    feeder_name = None
    if site.feeder_id:
        try:
            feeder_name = registry.site(site.feeder_id).name
        except PqmonError:
            feeder_name = site.feeder_id  # not in the registry: its id is all there is
    day_from, day_to = date.fromisoformat(report["from"]), date.fromisoformat(report["to"])
    return ReportDoc(
        report=report,
        lang=lang,
        utility=utility_name(settings, lang),
        report_no=report_number(site.id, day_from, day_to),
        issued=issued or today,
        version=version,
        provisional=day_to >= today,
        feeder_name=feeder_name,
        voltage_class_kv=site.voltage_class_kv,
        changes=changes,
        short_outage_s=settings.short_outage_s,
        vqr_target_pct=settings.last_mile_target_vqr_pct,
    )

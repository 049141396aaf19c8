"""Report downloads: issued versions (PDF in either language, CSV), the month so far, a zip.

Every route takes the account from its path and asks the request's :class:`authz.Access`
for it, so a customer guessing another account's URL gets the same 404 as for an account
that does not exist. Issued versions print their own frozen figures (the JSON kept beside
them), whatever the language asked for; the month so far is computed on the spot.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, request, send_file

from analysis import report_csv
from analysis.report import site_report
from core.registry import ROLES, Site
from core.settings import LANGS
from dashboard import authz
from dashboard.context import get_context
from reports.archive import Issue, issue_of, issues
from reports.monthly import MONTH_FORMAT, document, month_days
from reports.pdf import render, render_to

bp = Blueprint("pqmon_reports", __name__, url_prefix="/reports")


def _access() -> authz.Access:
    try:
        return authz.access_for(authz.rule_for(ROLES))
    except authz.AuthError:
        abort(404)


def _site(access: authz.Access, site_id: str) -> Site:
    try:
        return access.site(site_id)
    except authz.Forbidden:
        abort(404)


def _month(month: str) -> str:
    if not MONTH_FORMAT.match(month):
        abort(404)
    return month


def _lang(lang: str) -> str:
    if lang not in LANGS:
        abort(404)
    return lang


def _today() -> date:
    return datetime.now(get_context().settings.zone).date()


def file_name(report_no: str, version: int | None, lang: str, ext: str = "pdf") -> str:
    """``PQ-202611-A001-v2.zh-CN.pdf``: sorts by month and keeps versions apart in a folder."""
    return f"{report_no}{f'-v{version}' if version else ''}.{lang}.{ext}"


def issued_pdf(issue: Issue, lang: str) -> Path:
    """The version's PDF in ``lang``, rendered from its own figures the first time it is asked."""
    path = issue.pdf_path(lang)
    if not path.exists():
        ctx = get_context()
        record = json.loads(issue.path.read_text(encoding="utf-8"))
        doc = document(
            record["report"],
            ctx.registry,
            ctx.settings,
            lang,
            _today(),
            version=issue.version,
            changes=record.get("changes") or [],
            issued=datetime.fromisoformat(record["issued"]).date(),
        )
        render_to(doc, path)
    return path


def _pdf(data: bytes | Path, name: str) -> Response:
    body = io.BytesIO(data) if isinstance(data, bytes) else data
    return send_file(body, mimetype="application/pdf", as_attachment=True, download_name=name)


@authz.route(bp, "/<site_id>/<month>/v<int:version>.<lang>.pdf", roles=ROLES, methods=["GET"])
def version_pdf(site_id: str, month: str, version: int, lang: str) -> Response:
    """An issued version, exactly as issued (its figures do not move with later data)."""
    site = _site(_access(), site_id)
    found = issue_of(get_context().registry, site.id, _month(month), version)
    if found is None:
        abort(404)
    return _pdf(issued_pdf(found, _lang(lang)), file_name(found.report_no, found.version, lang))


@authz.route(bp, "/<site_id>/<month>/v<int:version>.csv", roles=ROLES, methods=["GET"])
def version_csv(site_id: str, month: str, version: int) -> Response:
    """An issued version's figures as the ``figure,value`` table of ``pqmon report --format csv``."""
    site = _site(_access(), site_id)
    found = issue_of(get_context().registry, site.id, _month(month), version)
    if found is None:
        abort(404)
    record = json.loads(found.path.read_text(encoding="utf-8"))
    text = report_csv.site_tables(record["report"])[report_csv.MAIN]
    return send_file(
        io.BytesIO(("\ufeff" + text).encode("utf-8")),
        mimetype="text/csv",
        as_attachment=True,
        download_name=f"{found.report_no}-v{found.version}.csv",
    )


def current_report(site: Site, month: str) -> dict[str, Any]:
    ctx = get_context()
    first, last = month_days(month)
    return site_report(
        ctx.store,
        ctx.registry,
        site.id,
        first,
        last,
        ctx.settings.tz,
        en50160_min_coverage_pct=ctx.settings.en50160_min_coverage_pct,
    )


@authz.route(bp, "/<site_id>/<month>/current.<lang>.pdf", roles=ROLES, methods=["GET"])
def current_pdf(site_id: str, month: str, lang: str) -> Response:
    """The month's report with today's figures: provisional while the month runs, and for a
    closed month before its version 1 is issued."""
    site = _site(_access(), site_id)
    month, lang = _month(month), _lang(lang)
    if month_days(month)[0] > _today():
        abort(404)  # a month to come has no report
    ctx = get_context()
    doc = document(current_report(site, month), ctx.registry, ctx.settings, lang, _today())
    return _pdf(render(doc), file_name(doc.report_no, None, lang))


@authz.route(bp, "/month/<month>.zip", roles=ROLES, methods=["GET"])
def month_zip(month: str) -> Response:
    """The latest issued version of each of the caller's accounts for the month, in one zip."""
    access = _access()
    month = _month(month)
    lang = _lang(request.args.get("lang") or get_context().settings.lang)
    latest: dict[str, Issue] = {}
    for found in issues(get_context().registry, access.site_ids(), month):
        latest.setdefault(found.site_id, found)  # newest version first
    if not latest:
        abort(404)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:  # PDFs are compressed already
        for found in latest.values():
            zf.write(issued_pdf(found, lang), file_name(found.report_no, found.version, lang))
    out.seek(0)
    return send_file(
        out, mimetype="application/zip", as_attachment=True, download_name=f"reports-{month}.{lang}.zip"
    )

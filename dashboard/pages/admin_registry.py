"""Administration: registry CSV import (``/admin/registry``), previewed before it is applied.

Uploading shows what the file would change (dashboard.registry_preview) and changes nothing.
The preview hands the browser a key: an HMAC, under the app's secret, of the session, the
file's SHA-256 and a fingerprint of the registry it was compared with. Apply re-sends the
file and the key; it is applied only if both still match, so what is applied is exactly the
file that was previewed, by this session, against the registry as it was shown.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from typing import Any

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, dcc, html
from flask import current_app, session

from core.errors import PqmonError
from dashboard import authz
from dashboard.auth import SESSION_ID_KEY
from dashboard.i18n import _, num
from dashboard.pages.admin import accounts, failure, grid, header, refused, registry, success
from dashboard.registry_preview import Preview, preview_text, registry_digest, shown

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/admin/registry", title="pqmon", name="admin-registry", order=91)

MAX_FILE_BYTES = 512 * 1024  # a request may carry 1 MiB; the file travels base64-encoded
MAX_AUDITED_CHANGES = 200


def decode_upload(contents: object) -> tuple[bytes, str]:
    """The uploaded bytes and their text (UTF-8, else GB18030 as Excel saves it in China)."""
    if not isinstance(contents, str) or "," not in contents:
        raise ValueError(_("Choose a CSV file."))
    try:
        data = base64.b64decode(contents.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(_("The upload could not be read; choose the file again.")) from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(_("The file is larger than %(kib)s KiB.", kib=MAX_FILE_BYTES // 1024))
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data, data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValueError(_("The file is not text in UTF-8 or GB18030."))


def preview_key(data: bytes, digest: str) -> str:
    """Binds a preview to this session, this file and the registry it was compared with."""
    sid = session.get(SESSION_ID_KEY, "")
    message = "\n".join(("registry-import", str(sid), hashlib.sha256(data).hexdigest(), digest))
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def current_preview(text: str) -> tuple[Preview, str]:
    sites, users = registry().sites(), registry().users()
    return preview_text(text, sites, users), registry_digest(sites, users)


def change_columns() -> list[dict[str, Any]]:
    return [
        {"field": "line", "headerName": _("Line"), "type": "numericColumn", "maxWidth": 90},
        {"field": "change", "headerName": _("Change")},
        {"field": "target", "headerName": _("Site or meter")},
        {"field": "field", "headerName": _("Field")},
        {"field": "old", "headerName": _("Now")},
        {"field": "new", "headerName": _("After the import")},
    ]


def change_rows(p: Preview) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for c in p.sites_added:
        for f in c.changes:
            rows.append(
                {
                    "line": c.line,
                    "change": _("site added"),
                    "target": c.site_id,
                    "field": f.field,
                    "old": "",
                    "new": shown(f.new),
                }
            )
    for c in p.sites_updated:
        for f in c.changes:
            rows.append(
                {
                    "line": c.line,
                    "change": _("site changed"),
                    "target": c.site_id,
                    "field": f.field,
                    "old": shown(f.old),
                    "new": shown(f.new),
                }
            )
    for m in p.meters_added:
        rows.append(
            {
                "line": m.line,
                "change": _("meter added"),
                "target": f"{m.site_id}/{m.meter_id}",
                "field": "nominal_v",
                "old": "",
                "new": shown(m.nominal_v),
            }
        )
    for m in p.meters_updated:
        rows.append(
            {
                "line": m.line,
                "change": _("meter changed"),
                "target": f"{m.site_id}/{m.meter_id}",
                "field": "nominal_v",
                "old": shown(m.old_nominal_v),
                "new": shown(m.nominal_v),
            }
        )
    for a in p.assignments:
        rows.append(
            {
                "line": a.line,
                "change": _("assigned to manager"),
                "target": a.site_id,
                "field": "manager",
                "old": "",
                "new": a.manager,
            }
        )
    return sorted(rows, key=lambda r: r["line"])


def summary(p: Preview) -> str:
    return _(
        "Sites: %(sa)s added, %(su)s changed, %(ss)s unchanged. Meters: %(ma)s added, %(mu)s changed, "
        "%(ms)s unchanged. Manager assignments: %(asg)s. Nothing is removed by an import.",
        sa=num(len(p.sites_added)),
        su=num(len(p.sites_updated)),
        ss=num(len(p.sites_unchanged)),
        ma=num(len(p.meters_added)),
        mu=num(len(p.meters_updated)),
        ms=num(p.meters_unchanged),
        asg=num(len(p.assignments)),
    )


def render(p: Preview, filename: str) -> list[Any]:
    parts: list[Any] = [
        html.H2(_("Preview of %(file)s", file=filename)),
        dmc.Text(summary(p), id="adm-import-summary"),
    ]
    if p.errors:
        parts.append(
            dmc.Alert(
                [html.Div(_("Fix these lines; nothing will be applied while any is wrong:"))]
                + [
                    html.Div(_("Line %(line)s: %(message)s", line=e.line, message=e.message))
                    for e in p.errors
                ],
                color="red",
                id="adm-import-errors",
                mt="sm",
            )
        )
    if p.unknown_managers:
        parts.append(
            dmc.Alert(
                [
                    html.Div(
                        _("These manager names have no manager user; their accounts are assigned to no one:")
                    )
                ]
                + [
                    html.Div(
                        _(
                            "Line %(line)s: %(manager)s (%(site)s)",
                            line=a.line,
                            manager=a.manager,
                            site=a.site_id,
                        )
                    )
                    for a in p.unknown_managers
                ],
                color="yellow",
                id="adm-import-unknown",
                mt="sm",
            )
        )
    if p.applicable and not p.changes_anything:
        parts.append(
            dmc.Alert(_("The file matches the registry; applying it changes nothing."), color="gray", mt="sm")
        )
    parts.append(grid("adm-import-changes", change_columns(), change_rows(p)))
    return parts


@authz.page_layout(authz.ADMIN)
def layout(access: authz.Access, **_query: str) -> html.Div:
    return html.Div(
        [
            *header("registry", _("Registry import")),
            dmc.Text(
                _(
                    "Upload a registry CSV (the columns of 'pqmon registry import'). You see what it would "
                    "change before anything is written; Apply writes exactly the file you previewed."
                ),
                size="sm",
            ),
            dcc.Upload(
                id="adm-upload",
                children=html.Div(_("Drop a registry CSV here, or click to choose one")),
                accept=".csv,text/csv",
                max_size=MAX_FILE_BYTES,
                multiple=False,
                className="admin-upload",
                style={
                    "border": "1px dashed #8a94a0",
                    "borderRadius": "6px",
                    "padding": "1.2rem",
                    "textAlign": "center",
                    "margin": "1rem 0",
                    "cursor": "pointer",
                },
            ),
            dcc.Store(id="adm-preview-key", data=None),
            html.Div(id="adm-preview"),
            dmc.Button(_("Apply this import"), id="adm-apply", disabled=True, mt="md"),
            html.Div(id="adm-apply-msg"),
        ],
        className="page admin",
    )


@authz.callback(
    Output("adm-preview", "children"),
    Output("adm-preview-key", "data"),
    Output("adm-apply", "disabled"),
    Output("adm-apply-msg", "children"),
    Input("adm-upload", "contents"),
    Input("adm-apply", "n_clicks"),
    State("adm-upload", "filename"),
    State("adm-preview-key", "data"),
    roles=authz.ADMIN,
    denied=lambda: (dash.no_update, None, True, refused()),
    prevent_initial_call=True,
)
def preview_or_apply(
    access: authz.Access, contents: object, _clicks: object, filename: object, key: object
) -> tuple[Any, Any, bool, Any]:
    """A new upload is previewed (nothing is written); Apply writes the previewed file."""
    name = filename if isinstance(filename, str) else "registry.csv"
    try:
        data, text = decode_upload(contents)
    except ValueError as exc:
        return failure(str(exc)), None, True, None
    p, digest = current_preview(text)
    if dash.ctx.triggered_id != "adm-apply":
        new_key = preview_key(data, digest) if p.applicable else None
        return render(p, name), new_key, not p.applicable, None
    return dash.no_update, None, True, apply_import(access, data, name, p, digest, key)


def apply_import(access: authz.Access, data: bytes, name: str, p: Preview, digest: str, key: object) -> Any:
    if not isinstance(key, str) or not hmac.compare_digest(key, preview_key(data, digest)):
        return failure(
            _(
                "The file or the registry changed since the preview; upload the file again to see a new "
                "preview."
            )
        )
    if not p.applicable:
        return failure(_("The file has errors; nothing was applied."))
    try:
        result = registry().upsert_rows(p.rows, source=name)
    except PqmonError as exc:
        return failure(_("Nothing was changed: %(reason)s", reason=str(exc)))
    changes = change_rows(p)
    accounts().audit(
        access.user.name,
        "registry.import",
        name,
        sha256=hashlib.sha256(data).hexdigest(),
        sites_added=result.sites_added,
        sites_updated=len(p.sites_updated),
        meters_added=result.meters_added,
        meters_updated=len(p.meters_updated),
        assignments_added=result.assignments_added,
        unknown_managers=list(result.unknown_managers),
        changes=[
            {k: r[k] for k in ("line", "target", "field", "old", "new")}
            for r in changes[:MAX_AUDITED_CHANGES]
        ],
        changes_not_listed=max(0, len(changes) - MAX_AUDITED_CHANGES),
    )
    log.info("admin %s imported %s (%s rows)", access.user.name, name, len(p.rows))
    return success(
        _(
            "Applied %(file)s: %(sa)s site(s) added, %(su)s changed; %(ma)s meter(s) added, %(mu)s changed; "
            "%(asg)s assignment(s).",
            file=name,
            sa=num(result.sites_added),
            su=num(len(p.sites_updated)),
            ma=num(result.meters_added),
            mu=num(len(p.meters_updated)),
            asg=num(result.assignments_added),
        ),
        "adm-apply-ok",
    )

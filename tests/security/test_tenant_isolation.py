"""Nothing of account B reaches a customer of A or a manager not assigned to B, whatever they send.

The callbacks come from the app's own callback map (``/_dash-dependencies``) and the routes from
its Flask URL map, so a callback or route added later is covered without editing this test. Each
is called with B's id in every input, state, path and query slot. The same calls made by an
administrator must show B, so the test cannot pass by showing nothing to anyone.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import zipfile
from collections.abc import Iterator
from typing import Any

import dash
import pytest
import requests
from flask import Blueprint

from core.errors import ConfigError
from dashboard import app as app_module
from dashboard.app import create_app
from tests.browser.support import ACCOUNTS, PASSWORD, WAIT_S, Dashboard, requests_login

# Every call, with the registry (users, assignments, sessions) on SQLite and on PostgreSQL.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("site", ["sqlite", "postgresql"], indirect=True, scope="package"),
]

B = "A002"
B_NAME = ACCOUNTS[B][0]
B_VQR = ACCOUNTS[B][2]
# What of B would show if it leaked: its name and its figure. Its id alone is not a marker,
# since a page may echo the path or query it was asked for.
MARKERS = (B_NAME, B_VQR, "97.5")
DATE_PROPS = {"start_date", "end_date", "date", "value_date"}


def b_visible(text: str) -> list[str]:
    return [m for m in MARKERS if m in text]


def outputs_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``outputs`` Dash's renderer sends, from the dependency's output string."""
    raw = spec["output"]
    parts = raw.strip(".").split("...") if raw.startswith("..") else [raw]
    found = []
    for part in parts:
        component, _, prop = part.rpartition(".")
        if component.startswith("{"):
            component = json.loads(component)
        found.append({"id": component, "property": prop.split("@")[0]})
    return found


def slot_values(prop: str, round_no: int, day_from: str, day_to: str) -> Any:
    """B's id in every shape a slot might take; dates stay valid so the site path is reached."""
    if prop in DATE_PROPS or prop.endswith("_date"):
        return day_from if prop.startswith("start") or prop == "date" else day_to
    if prop == "pathname":  # the page router: every page path that can name an account
        return [f"/account/{B}", f"/feeder/{B}", f"/account/{B}/", "/alerts"][round_no]
    if prop == "search":
        return f"?site={B}&site_id={B}&from={day_from}&to={day_to}"
    if prop == "href":
        return f"/account/{B}"
    return [B, [B], {"site": B, "site_id": B, "feeder": B, "id": B}, f"/account/{B}"][round_no]


def payloads(spec: dict[str, Any], day_from: str, day_to: str) -> Iterator[dict[str, Any]]:
    outs = outputs_of(spec)
    single = not spec["output"].startswith("..")
    for round_no in range(4):

        def fill(items: list[dict[str, Any]], rn: int = round_no) -> list[dict[str, Any]]:
            return [{**i, "value": slot_values(i["property"], rn, day_from, day_to)} for i in items]

        inputs = fill(spec["inputs"])
        yield {
            "output": spec["output"],
            "outputs": outs[0] if single else outs,
            "inputs": inputs,
            "state": fill(spec["state"]),
            "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs[:1]],
        }


def call_everything(site: Dashboard, name: str) -> dict[str, str]:
    """Every callback (4 shapes of input) and every GET route, as ``name``; what each returned."""
    http, resp = requests_login(site.url, name, PASSWORD)
    assert resp.status_code == 302
    http.get(site.url + "/_dash-layout", timeout=WAIT_S)
    csrf = http.cookies.get("_csrf_token")
    assert csrf, "a signed-in browser is given the CSRF cookie"
    deps = http.get(site.url + "/_dash-dependencies", timeout=WAIT_S).json()
    assert deps, "the app has callbacks"
    day_from = (site.data_day.replace(day=1)).isoformat()
    day_to = site.data_day.isoformat()
    seen: dict[str, str] = {}
    for n, spec in enumerate(deps):
        if spec.get("clientside_function"):
            continue
        for k, body in enumerate(payloads(spec, day_from, day_to)):
            r = http.post(
                site.url + "/_dash-update-component", json=body, headers={"X-CSRFToken": csrf}, timeout=WAIT_S
            )
            assert r.status_code in (200, 204), (spec["output"], r.status_code, r.text[:300])
            assert "Traceback" not in r.text
            seen[f"callback {spec['output']} #{k}"] = r.text
        assert n < 500
    for rule in site_rules(site):
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: path_value(m.group(1), site), rule)
        for query in ("", f"?site={B}&site_id={B}&feeder={B}&from={day_from}&to={day_to}&id={B}"):
            r = http.get(site.url + path + query, timeout=WAIT_S, allow_redirects=True)
            assert r.status_code < 500, (path, r.status_code)
            seen[f"GET {path}{query}"] = readable(r)
    return seen


def path_value(slot: str, site: Dashboard) -> str:
    """B in every path slot that names something; a real month, version and language elsewhere,
    so a download route is reached with a request that would succeed for B's own users."""
    return {"month": f"{site.data_day:%Y-%m}", "version": "1", "lang": "en"}.get(slot, B)


def readable(r: requests.Response) -> str:
    """What a user got, as text: a PDF (or the PDFs of a zip) through pdftotext, so an account's
    name in a downloaded report counts as seen like one on a page."""
    kind = r.headers.get("Content-Type", "")
    if r.status_code != 200 or not kind.startswith(("application/pdf", "application/zip")):
        return r.text
    if kind.startswith("application/zip"):
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            return "\n".join(name + "\n" + pdf_text(zf.read(name)) for name in zf.namelist())
    return pdf_text(r.content)


def pdf_text(data: bytes) -> str:
    done = subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def site_rules(site: Dashboard) -> list[str]:
    """Every GET rule of the app's URL map, Dash's bundles excepted (static files, no data)."""
    rules = []
    for rule in site_app_rules():
        if "GET" in (rule.methods or ()) and not rule.rule.startswith(("/_dash-component-suites", "/assets")):
            rules.append(rule.rule)
    assert "/account/<site_id>" not in rules  # pages are served through the catch-all
    # /logout last: it ends the session, and every route after it would answer the login page.
    return sorted(set(rules), key=lambda r: (r == "/logout", r))


_APP_RULES: list[Any] = []


def site_app_rules() -> list[Any]:
    return _APP_RULES


@pytest.fixture(scope="module", autouse=True)
def url_map(site: Dashboard) -> None:
    """The URL map of an app built like the served one (same code, same rules)."""
    app = create_app(site.settings, registry=site.registry, store=site.store)
    _APP_RULES[:] = list(app.server.url_map.iter_rules())


@pytest.mark.parametrize("user", ["custA", "mgrA"])
def test_nothing_of_b_reaches_a_user_of_a(site: Dashboard, user: str) -> None:
    leaks = {where: b_visible(text) for where, text in call_everything(site, user).items()}
    leaks = {where: found for where, found in leaks.items() if found}
    assert not leaks, f"{user} saw account B in: {json.dumps(leaks, indent=1)[:3000]}"


def test_the_same_calls_show_b_to_an_administrator(site: Dashboard) -> None:
    """The control: the payloads do reach B's figures when the user may see B."""
    seen = call_everything(site, "admin1")
    showing = [where for where, text in seen.items() if B_NAME in text or B_VQR in text]
    assert any(w.startswith("callback") for w in showing), "no callback showed B to an administrator"
    downloads = [w for w in showing if w.startswith(f"GET /reports/{B}/")]
    assert len(downloads) >= 4, f"B's reports did not download for an administrator: {showing}"
    assert any(w.startswith("GET /reports/month/") for w in showing), "the month's zip lacks B"


def test_an_undeclared_callback_stops_the_app(site: Dashboard) -> None:
    from dash import Input, Output, _callback

    before = set(_callback.GLOBAL_CALLBACK_MAP)
    dash.callback(Output("rogue-out", "children"), Input("rogue-in", "value"))(lambda v: v)
    try:
        with pytest.raises(ConfigError, match=r"callback rogue-out\.children"):
            create_app(site.settings, registry=site.registry, store=site.store)
    finally:
        for key in set(_callback.GLOBAL_CALLBACK_MAP) - before:
            del _callback.GLOBAL_CALLBACK_MAP[key]
        _callback.GLOBAL_CALLBACK_LIST[:] = [
            c for c in _callback.GLOBAL_CALLBACK_LIST if "rogue-out" not in str(c.get("output"))
        ]


def test_an_undeclared_route_stops_the_app(site: Dashboard, monkeypatch: pytest.MonkeyPatch) -> None:
    rogue = Blueprint("rogue", __name__)
    rogue.route("/export")(lambda: "everything")
    declared = app_module.extra_blueprints()
    monkeypatch.setattr(app_module, "extra_blueprints", lambda: [*declared, rogue])
    with pytest.raises(ConfigError, match=r"route rogue\.<lambda>"):
        create_app(site.settings, registry=site.registry, store=site.store)


def test_each_refusal_is_the_same_for_unknown_and_forbidden(site: Dashboard) -> None:
    http, _ = requests_login(site.url, "custA", PASSWORD)
    pages = [http.get(site.url + f"/account/{x}", timeout=WAIT_S) for x in (B, "NO-SUCH")]
    assert pages[0].status_code == pages[1].status_code == 200  # the shell; the layout decides
    assert list(itertools.chain(b_visible(p.text) for p in pages)) == [[], []]

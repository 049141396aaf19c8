"""Every page and every callback, rendered for a user who reads Chinese, shows no English word.

The catalog test proves each ``_()`` string has a translation; this one catches text that
never went through ``_()``: it renders every registered page (through Dash's own router
callback, as the browser does) and calls every callback with the user's own ids, then looks
for English words in what would be shown. Data (names from the registry), units, standards'
names and acronyms are allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import dash
import pytest

from tests.browser.support import ACCOUNTS, PASSWORD, WAIT_S, Dashboard, dash_post, requests_login
from tests.security.test_tenant_isolation import outputs_of

pytestmark = pytest.mark.integration

# Words that are the same in both languages: units, acronyms, standards, product and data names.
ALLOWED = {
    "pqmon",
    "vqr",
    "saifi",
    "saidi",
    "caidi",
    "itic",
    "semi",
    "f47",
    "en",
    "iec",
    "ieee",
    "gb",
    "dl",
    "kv",
    "mv",
    "ms",
    "min",
    "csv",
    "api",
    "pt",
    "ua",
    "ub",
    "uc",
    "uab",
    "ubc",
    "uca",
    "rs",
    "thd",
    "utc",
    "id",
    "ok",
    "asia",
    "shanghai",
    "pst",
    "plt",
    "max",
    "avg",
    "http",
    "https",
    "webhook",
    "url",
    "registry",  # the command 'pqmon registry import', quoted as typed
    "import",
    "dingtalk",
    "wecom",
    "email",
    "mqtt",
    "smtp",
    "json",
    "png",
    "svg",
}
for name, _, _ in ACCOUNTS.values():
    ALLOWED.update(w.lower() for w in name.split())
TEXT_KEYS = {"children", "label", "placeholder", "headerName", "text", "title", "description", "name"}
WORD = re.compile(r"[A-Za-z]{3,}")
SKIP_VALUES = re.compile(r"^(#|rgba?\(|var\(|[\w.-]+@[\w.-]+$|/|https?://|\d)")


def visible_strings(node: Any, key: str = "") -> Iterator[str]:
    """Strings a user would read: the values of text props (children, label, headerName,
    titles ...) of components and figures, and the items of lists held by such a prop."""
    if isinstance(node, str):
        if key in TEXT_KEYS and not SKIP_VALUES.match(node):
            yield node
    elif isinstance(node, list):
        for item in node:
            yield from visible_strings(item, key)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k in ("rowData", "style", "id", "href", "field", "columnKeys", "value", "className"):
                continue
            yield from visible_strings(v, k)


def english_words(texts: Iterator[str], data: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    """Words of three letters or more that are neither allowed nor data (user and site names)."""
    found = set()
    for text in texts:
        for word in WORD.findall(text):
            if word.lower() not in ALLOWED and word not in data:
                found.add(word)
    return found


@pytest.fixture(scope="module")
def chinese_admin(site: Dashboard) -> Any:
    site.registry.add_user("admin_zh", "admin", PASSWORD)
    site.registry.set_user_lang("admin_zh", "zh-CN")
    http, resp = requests_login(site.url, "admin_zh", PASSWORD)
    assert resp.status_code == 302
    http.get(site.url + "/_dash-layout", timeout=WAIT_S)
    return http


def data_words(site: Dashboard) -> set[str]:
    """Names that are data, not interface: users, roles as stored, sites and their managers."""
    words = {"admin", "manager", "operator", "customer"}
    for u in site.registry.users():
        words.update(WORD.findall(u.name))
    for s in site.registry.sites():
        words.update(WORD.findall(f"{s.id} {s.name} {s.manager or ''}"))
    return words


def post(site: Dashboard, http: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = dash_post(site.url, http, body)
    assert r.status_code in (200, 204), r.text[:300]
    return r.json() if r.status_code == 200 else {}


def test_the_shell_and_every_page_are_chinese(site: Dashboard, chinese_admin: Any) -> None:
    shell = chinese_admin.get(site.url + "/_dash-layout", timeout=WAIT_S).json()
    assert "退出登录" in str(shell)
    assert '<html lang="zh-CN">' in chinese_admin.get(site.url + "/", timeout=WAIT_S).text
    router = next(
        d
        for d in chinese_admin.get(site.url + "/_dash-dependencies", timeout=WAIT_S).json()
        if "_pages_content" in d["output"]
    )
    data = data_words(site)
    leaks: dict[str, set[str]] = {"shell": english_words(visible_strings(shell), data)}
    paths = [p["path"] for p in dash.page_registry.values() if "<" not in p["path"]]
    paths += ["/account/A001"]
    assert len(paths) >= 7
    for path in paths:
        body = {
            "output": router["output"],
            "outputs": outputs_of(router),
            "inputs": [{**i, "value": path if i["property"] == "pathname" else ""} for i in router["inputs"]],
            "state": [{**s, "value": None} for s in router["state"]],
            "changedPropIds": ["_pages_location.pathname"],
        }
        page = post(site, chinese_admin, body)
        assert page, path
        leaks[path] = english_words(visible_strings(page), data)
    leaks = {k: v for k, v in leaks.items() if v}
    assert not leaks, f"English on Chinese pages: {leaks}"


def test_every_callback_answers_in_chinese(site: Dashboard, chinese_admin: Any) -> None:
    deps = chinese_admin.get(site.url + "/_dash-dependencies", timeout=WAIT_S).json()
    day_to = site.data_day.isoformat()
    day_from = site.data_day.replace(day=1).isoformat()
    leaks: dict[str, set[str]] = {}
    data = data_words(site)
    for spec in deps:
        if spec.get("clientside_function") or "_pages_content" in spec["output"]:
            continue

        def value(prop: str) -> Any:
            if prop.endswith("date") or prop == "date":
                return day_from if prop.startswith("start") else day_to
            if prop == "data":
                return "A001"
            return None

        single = not spec["output"].startswith("..")
        outs = outputs_of(spec)
        inputs = [{**i, "value": value(i["property"])} for i in spec["inputs"]]
        body = {
            "output": spec["output"],
            "outputs": outs[0] if single else outs,
            "inputs": inputs,
            "state": [{**s, "value": value(s["property"])} for s in spec["state"]],
            "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs[:1]],
        }
        found = english_words(visible_strings(post(site, chinese_admin, body)), data)
        if found:
            leaks[spec["output"]] = found
    assert not leaks, f"English in callback answers: {leaks}"

"""Languages of the dashboard: gettext catalogs (Flask-Babel) and locale-aware formatting.

Every visible string is written as ``_("English text")``; ``pybabel extract`` collects them
into ``core/translations`` (shared with the PDF reports) where translators fill in the
``.po`` files (see the README's "Translating" section). The language is the user's own
choice, else PQMON_LANG; the login page follows a ``?lang=`` link, remembered in a cookie.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from flask import Flask, g, has_request_context, request
from flask_babel import Babel, force_locale, get_locale, gettext, lazy_gettext, ngettext

from core.settings import LANGS

__all__ = ["_", "N_", "lazy_gettext", "ngettext", "force_locale", "setup", "lang", "num", "pct", "when"]

TRANSLATIONS = Path(__file__).resolve().parent.parent / "core" / "translations"
LANG_COOKIE = "pqmon_lang"
MISSING = "–"

_ = gettext


def N_(text: str) -> str:  # noqa: N802  (gettext's name for it)
    """Marks a string for extraction where it is defined; it is translated where shown."""
    return text


def babel_locale(code: str) -> str:
    """zh-CN (what users and settings say) -> zh_CN (what Babel parses; its catalogs live under
    Babel's full name for it, zh_Hans_CN)."""
    return code.replace("-", "_")


def _select() -> str:
    from dashboard.auth import current_user
    from dashboard.context import get_context

    user = current_user()
    if user is not None and user.lang in LANGS:
        return babel_locale(user.lang)
    asked = request.args.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in LANGS:
        return babel_locale(asked)
    return babel_locale(get_context().settings.lang)


def setup(server: Flask, tz: str) -> None:
    Babel(
        server,
        locale_selector=_select,
        default_translation_directories=str(TRANSLATIONS),
        default_timezone=tz,
    )


def lang() -> str:
    """The request's language as users write it: zh-CN or en."""
    if not has_request_context():
        return "en"
    if "pqmon_lang" not in g:
        loc = get_locale()
        g.pqmon_lang = "zh-CN" if loc is not None and loc.language == "zh" else "en"
    code: str = g.pqmon_lang
    return code


def num(value: object, decimals: int = 0) -> str:
    """A figure with the locale's separators and exactly ``decimals`` places, or the dash."""
    from dashboard.widgets import is_number

    if not is_number(value):
        return MISSING
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return str(format_decimal(float(value), format=pattern, locale=babel_locale(lang())))  # type: ignore[arg-type]


def pct(value: object, decimals: int = 2) -> str:
    text = num(value, decimals)
    return text if text == MISSING else text + " %"


def when(ms: object, tz: str, seconds: bool = False) -> str:
    """A UTC epoch-ms instant as local date and time; ISO-like in both languages (unambiguous)."""
    from dashboard.widgets import is_number

    if not is_number(ms):
        return MISSING
    local = datetime.fromtimestamp(float(ms) / 1000, ZoneInfo(tz))  # type: ignore[arg-type]
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")

"""The report's language: the product's gettext catalogs, without a web request.

The dashboard and the PDF share one catalog (``core/translations``), so a figure is named the
same on the page and on paper. Numbers are printed with fixed decimals and ASCII digits in
every language, so the text a PDF reader extracts compares directly with the JSON report.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from babel.support import NullTranslations, Translations

from core.settings import LANGS

CATALOGS = Path(__file__).resolve().parent.parent / "core" / "translations"
MISSING = "—"
Gettext = Callable[[str], str]


def N_(text: str) -> str:  # noqa: N802  (gettext's name for it)
    """Marks a string for extraction where it is defined; translated where it is shown."""
    return text


def babel_locale(lang: str) -> str:
    """``zh-CN`` -> ``zh_Hans_CN``: the catalogs carry Babel's name (see core/translations)."""
    return "zh_Hans_CN" if lang.lower().startswith("zh") else "en"


@functools.cache
def _translations(lang: str) -> NullTranslations:
    return Translations.load(str(CATALOGS), [babel_locale(lang)])


def gettext_for(lang: str) -> Gettext:
    """The catalog's ``gettext`` for a language; refuses a language pqmon does not speak."""
    if lang not in LANGS:
        raise ValueError(f"--lang {lang}: pqmon reports speak {', '.join(LANGS)}")
    return _translations(lang).gettext


def _finite(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def fixed(value: object, decimals: int) -> str:
    """``1234.5`` -> ``1,234.50``; unknown -> an em dash, never 0."""
    number = _finite(value)
    return MISSING if number is None else f"{number:,.{decimals}f}"


def pct(value: object, decimals: int = 3) -> str:
    """A rate in %: three decimals, enough for RS-1 to tell 99.999 % from 100 %."""
    number = _finite(value)
    return MISSING if number is None else f"{number:.{decimals}f} %"


def signed(value: object, decimals: int = 3, unit: str = "") -> str:
    """A gap (customer minus supply side): always signed, so a reader sees which way it goes."""
    number = _finite(value)
    return MISSING if number is None else f"{number:+.{decimals}f}{unit}"


def minutes(value: object) -> str:
    return fixed(value, 0)


def hours_minutes(seconds: object) -> str:
    """``5400`` -> ``1:30:00``: durations as clocks read, seconds kept."""
    number = _finite(seconds)
    if number is None:
        return MISSING
    total = int(round(number))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def local(iso: object) -> str:
    """An ISO time of the report (local, with offset) as ``2026-11-03 14:05``."""
    if not isinstance(iso, str) or not iso:
        return MISSING
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")

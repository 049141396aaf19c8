"""Every visible string of the dashboard exists in Simplified Chinese and English.

The strings are extracted from the source exactly as translators' tooling does (``_()`` and
``N_()``), so a new string without a translation fails here before a user sees English in a
Chinese page. The compiled catalogs must match their ``.po`` sources.
"""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "core" / "translations"
KEYWORDS = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def source_messages() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT / "dashboard"), method_map=[("**.py", "python")], keywords=KEYWORDS
    ):
        found.update(message if isinstance(message, tuple) else (message,))
    return {m for m in found if m}


def catalog(locale: str):  # type: ignore[no-untyped-def]
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=locale)


def test_the_dashboard_has_strings_to_translate() -> None:
    assert len(source_messages()) > 40


@pytest.mark.parametrize("locale", ["zh_Hans_CN", "en"])
def test_every_visible_string_is_in_the_catalog(locale: str) -> None:
    cat = catalog(locale)
    missing = sorted(m for m in source_messages() if cat.get(m) is None)
    assert not missing, f"not in {locale} (run bash scripts/i18n.sh): {missing}"


def test_every_string_has_a_chinese_translation() -> None:
    cat = catalog("zh_Hans_CN")
    untranslated = sorted(m for m in source_messages() if not (cat.get(m) and cat.get(m).string))
    fuzzy = sorted(m.id for m in cat if m.id and m.fuzzy)
    assert not untranslated, f"no zh-CN translation: {untranslated}"
    assert not fuzzy, f"fuzzy (unchecked) zh-CN translations: {fuzzy}"


def test_translations_keep_every_placeholder() -> None:
    for message in catalog("zh_Hans_CN"):
        if message.id and message.string:
            assert set(PLACEHOLDER.findall(str(message.id))) == set(
                PLACEHOLDER.findall(str(message.string))
            ), message.id


@pytest.mark.parametrize("locale", ["zh_Hans_CN", "en"])
def test_compiled_catalog_matches_its_source(locale: str) -> None:
    expected = BytesIO()
    write_mo(expected, catalog(locale))
    expected.seek(0)
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        compiled = read_mo(fh)
    want = {m.id: m.string for m in read_mo(expected) if m.id}
    have = {m.id: m.string for m in compiled if m.id}
    assert have == want, "stale .mo: run bash scripts/i18n.sh"

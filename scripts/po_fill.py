"""Fill Simplified Chinese (zh_Hans_CN) translations from JSON files of {"English msgid": "中文"}.

    .venv/bin/python scripts/po_fill.py FILE.json [FILE.json ...]
    bash scripts/i18n.sh        # then compile

Entries whose msgid is not in the catalog are reported (run scripts/i18n.sh first to extract).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

PO = Path(__file__).resolve().parent.parent / "core/translations/zh_Hans_CN/LC_MESSAGES/messages.po"


def main(paths: list[str]) -> int:
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="zh_Hans_CN")
    unknown = []
    for path in paths:
        for msgid, text in json.loads(Path(path).read_text(encoding="utf-8")).items():
            message = catalog.get(msgid)
            if message is None:
                unknown.append(msgid)
                continue
            message.string = text
            message.flags.discard("fuzzy")
    with PO.open("wb") as fh:
        write_po(fh, catalog, width=100, sort_output=True, omit_header=False)
    missing = [m.id for m in catalog if m.id and not m.string]
    for msgid in unknown:
        print(f"not in the catalog (extract first?): {msgid!r}", file=sys.stderr)
    for msgid in missing:
        print(f"still untranslated: {msgid!r}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

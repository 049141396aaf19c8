#!/usr/bin/env bash
# Refresh the translation catalogs (dashboard and reports) after changing visible strings:
#   bash scripts/i18n.sh          extract, merge into both .po files, compile the .mo files
# Translators then fill in core/translations/zh_Hans_CN/LC_MESSAGES/messages.po and run it again.
set -euo pipefail
cd "$(dirname "$0")/.."
D=core/translations
.venv/bin/pybabel extract -F babel.cfg -k N_ --no-location --sort-output \
  --project pqmon --copyright-holder "pqmon authors" -o "$D/messages.pot" dashboard reports
for loc in zh_Hans_CN en; do
  if [ -f "$D/$loc/LC_MESSAGES/messages.po" ]; then
    .venv/bin/pybabel update --no-fuzzy-matching --ignore-obsolete -i "$D/messages.pot" -d "$D" -l "$loc"
  else
    .venv/bin/pybabel init -i "$D/messages.pot" -d "$D" -l "$loc"
  fi
done
.venv/bin/pybabel compile -d "$D"

#!/usr/bin/env bash
# Second README command: install the test dependencies, then run every test
# (unit, integration against real Mosquitto, InfluxDB and PostgreSQL, browser in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_apt mosquitto influxdb postgresql chromium chromium-driver python3-venv fonts-wqy-microhei poppler-utils docker-compose
ensure_venv dev
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"

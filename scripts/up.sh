#!/usr/bin/env bash
# First README command: install what is missing, then run the whole stack on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_apt mosquitto influxdb python3-venv fonts-wqy-microhei
ensure_venv
exec .venv/bin/pqmon up "$@"

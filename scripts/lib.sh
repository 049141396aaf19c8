# Shared by scripts/up.sh and scripts/test.sh: install only what is missing.
# shellcheck shell=bash

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# need_apt PACKAGE... : install the Debian/Ubuntu packages that are not installed yet.
need_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} from the distribution's packages" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# ensure_venv EXTRAS : a virtual environment in .venv with pqmon installed (editable).
ensure_venv() {
  local spec="."
  [ -n "${1:-}" ] && spec=".[$1]"
  local py=${PYTHON:-python3}
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "pqmon needs Python 3.11 or newer; $($py --version) found. Set PYTHON=/path/to/python3.11." >&2
    exit 1
  fi
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # Editable, so the checkout is what runs. setuptools prints a notice ("Editable installation")
  # for every editable mode; the package build itself (a wheel, as the Dockerfile installs it)
  # prints no warning, which tests/unit/test_packaging.py checks.
  .venv/bin/python -m pip install -q -e "$spec"
}

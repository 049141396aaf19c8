"""The package builds without a warning and carries what it needs at run time.

The wheel is what the Dockerfile installs and what a release ships: its migrations, translations
and dashboard assets are package data, and ``python -m pqmon`` must work from it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_builds_without_a_warning_and_holds_the_package_data(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # pip's own notes about this machine's package index configuration are not the build's.
    said = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "warn" in line.lower() and not line.startswith("WARNING: Location")
    ]
    assert said == [], "\n".join(said)
    (wheel,) = tmp_path.glob("pqmon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pqmon/__main__.py" in names
    assert {"core/migrations/env.py", "core/migrations/script.py.mako"} <= names
    assert any(n.startswith("core/migrations/versions/0001") for n in names)
    assert "core/translations/zh_Hans_CN/LC_MESSAGES/messages.mo" in names
    assert any(n.startswith("dashboard/assets/") for n in names)
    assert not any(n.startswith("tests/") for n in names)


def test_python_dash_m_pqmon_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pqmon", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage: pqmon" in done.stdout

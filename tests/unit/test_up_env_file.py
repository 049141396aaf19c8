"""``var/pqmon.env``: a running ``pqmon up``'s settings reach commands configured by nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import load_settings
from pqmon.stack import remove_env_file, write_env_file

STACK = {"PQMON_MQTT_URL": "mqtt://127.0.0.1:41883", "PQMON_INFLUX_URL": "http://127.0.0.1:48086"}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PQMON_DATA_DIR": str(tmp_path), **extra}


def test_a_running_stacks_file_fills_in_unset_settings(tmp_path: Path) -> None:
    path = tmp_path / "pqmon.env"
    write_env_file(path, STACK)
    assert path.stat().st_mode & 0o777 == 0o600
    settings = load_settings(_env(tmp_path), up_file=True)
    assert (settings.mqtt_url, settings.influx_url) == tuple(STACK.values())
    assert load_settings(_env(tmp_path)).influx_url == "http://127.0.0.1:8086"  # only for os.environ
    remove_env_file(path)
    assert not path.exists()


@pytest.mark.parametrize("name", ["PQMON_MQTT_URL", "PQMON_INFLUX_URL", "PQMON_REGISTRY_URL"])
def test_a_server_set_by_hand_means_the_file_is_not_read_at_all(tmp_path: Path, name: str) -> None:
    write_env_file(tmp_path / "pqmon.env", STACK)
    value = "sqlite:///x.db" if name == "PQMON_REGISTRY_URL" else STACK.get(name, "").replace("4", "5")
    settings = load_settings(_env(tmp_path, **{name: value}), up_file=True)
    assert settings.influx_url in ("http://127.0.0.1:8086", value)  # never the file's
    assert settings.mqtt_url in ("mqtt://127.0.0.1:1883", value)


def test_a_file_left_by_a_dead_up_is_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path = tmp_path / "pqmon.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in STACK.items()) + f"PQMON_UP_PID={dead.stdout.strip()}\n")
    settings = load_settings(_env(tmp_path), up_file=True)
    assert settings.influx_url == "http://127.0.0.1:8086"
    assert "no longer running" in caplog.text
    assert not any(k == "PQMON_UP_PID" for k in os.environ)


def test_env_file_none_turns_it_off(tmp_path: Path) -> None:
    write_env_file(tmp_path / "pqmon.env", STACK)
    assert (
        load_settings(_env(tmp_path, PQMON_ENV_FILE="none"), up_file=True).influx_url
        == "http://127.0.0.1:8086"
    )

"""Settings come from the environment; bad ones name the variable to fix."""

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import SETTINGS, Secret, load_settings


def test_defaults():
    s = load_settings({})
    assert s.tz == "Asia/Shanghai" and s.influx_db == "pqmon"
    assert s.registry_url.startswith("sqlite:///") and s.registry_url.endswith("registry.db")


def test_mqtt_url_with_credentials_and_tls():
    target = load_settings({"PQMON_MQTT_URL": "mqtts://gw%401:p%3Ass@broker:8884"}).mqtt
    assert (target.host, target.port, target.tls, target.username) == ("broker", 8884, True, "gw@1")
    assert target.password == "p:ss" and "p:ss" not in repr(target)


def test_secrets_are_masked():
    s = load_settings({"PQMON_INFLUX_TOKEN": "tok123"})
    assert "tok123" not in repr(s) and isinstance(s.influx_token, Secret)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PQMON_MQTT_URL": "http://x"}, "PQMON_MQTT_URL"),
        ({"PQMON_TZ": "Mars/Olympus"}, "PQMON_TZ"),
        ({"PQMON_BATCH_SIZE": "many"}, "PQMON_BATCH_SIZE"),
        (
            {"PQMON_INFLUX_TOKEN": "t", "PQMON_INFLUX_USER": "u", "PQMON_INFLUX_PASSWORD": "p"},
            "PQMON_INFLUX_TOKEN",
        ),
        ({"PQMON_INFLUX_USER": "u"}, "PQMON_INFLUX_PASSWORD"),
    ],
)
def test_bad_settings_name_the_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        load_settings(env)


def test_toml_file_then_environment(tmp_path: Path):
    conf = tmp_path / "pqmon.toml"
    conf.write_text('PQMON_INFLUX_DB = "fromfile"\nPQMON_TZ = "UTC"\n')
    s = load_settings({"PQMON_CONFIG": str(conf), "PQMON_TZ": "Europe/Berlin"})
    assert (s.influx_db, s.tz) == ("fromfile", "Europe/Berlin")


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [name for name, _, _ in SETTINGS if f"`{name}`" not in readme]
    assert not missing, f"document these settings in README.md: {missing}"

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


def test_every_setting_is_documented():
    """The settings table lives in docs/settings.md, generated from SETTINGS (README.md links to it)."""
    reference = (Path(__file__).parents[2] / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [name for name, _, _ in SETTINGS if f"`{name}`" not in reference]
    assert not missing, (
        f"docs/settings.md lacks {missing}: run `.venv/bin/python scripts/gen_docs.py` and commit docs/settings.md"
    )


def test_report_thresholds_default_to_the_standards_choices():
    s = load_settings({})
    assert (s.last_mile_target_vqr_pct, s.celid_single_h, s.celid_total_h) == (99.0, 3.0, 8.0)
    assert (s.med_min_history_days, s.med_history_years, s.med_ddof) == (365, 5, 1)
    assert s.en50160_min_coverage_pct == 80.0


def test_report_thresholds_from_the_environment():
    s = load_settings(
        {
            "PQMON_LAST_MILE_TARGET_VQR_PCT": "98.5",
            "PQMON_CELID_SINGLE_H": "4",
            "PQMON_CELID_TOTAL_H": "12",
            "PQMON_MED_MIN_HISTORY_DAYS": "700",
            "PQMON_MED_HISTORY_YEARS": "3",
            "PQMON_MED_DDOF": "0",
            "PQMON_EN50160_MIN_COVERAGE_PCT": "90",
        }
    )
    assert (s.last_mile_target_vqr_pct, s.celid_single_h, s.celid_total_h) == (98.5, 4.0, 12.0)
    assert (s.med_min_history_days, s.med_history_years, s.med_ddof) == (700, 3, 0)
    assert s.en50160_min_coverage_pct == 90.0


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PQMON_LAST_MILE_TARGET_VQR_PCT": "101"}, "PQMON_LAST_MILE_TARGET_VQR_PCT"),
        ({"PQMON_EN50160_MIN_COVERAGE_PCT": "0"}, "PQMON_EN50160_MIN_COVERAGE_PCT"),
        ({"PQMON_MED_DDOF": "2"}, "PQMON_MED_DDOF"),
        ({"PQMON_CELID_SINGLE_H": "-3"}, "PQMON_CELID_SINGLE_H"),
        ({"PQMON_MED_HISTORY_YEARS": "1", "PQMON_MED_MIN_HISTORY_DAYS": "400"}, "PQMON_MED_MIN_HISTORY_DAYS"),
    ],
)
def test_bad_report_thresholds_name_the_variable(env, name):
    with pytest.raises(ConfigError, match=name):
        load_settings(env)


def test_an_unreachable_registry_names_the_setting_and_hides_the_password():
    from core.errors import RegistryError
    from core.registry import Registry

    # postgresql:// means psycopg 3, the driver pqmon ships with (not psycopg2).
    with pytest.raises(RegistryError, match="PQMON_REGISTRY_URL") as failure:
        Registry("postgresql://pqmon:s3cret@127.0.0.1:1/pqmon")
    assert "s3cret" not in str(failure.value) and "postgresql+psycopg://pqmon:***@" in str(failure.value)

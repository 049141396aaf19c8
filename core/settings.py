"""One typed settings object per process, read from the environment (docs/cli.md).

An optional TOML file (``PQMON_CONFIG``) may set the same names; the environment wins.
Secrets are wrapped in :class:`Secret` so that they never show up in a repr or a log.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError

LANGS = ("zh-CN", "en")
IDENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Secret(str):
    """A string whose repr is masked."""

    def __repr__(self) -> str:
        return "Secret('**********')" if self else "Secret('')"


# name, default, help: rendered into docs/settings.md (tests/unit/test_docs.py).
SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("PQMON_MQTT_URL", "mqtt://127.0.0.1:1883", "MQTT broker: mqtt://user:pass@host:1883, mqtts:// for TLS"),
    ("PQMON_MQTT_CA_FILE", "", "CA bundle for mqtts:// (empty: the system's)"),
    (
        "PQMON_MQTT_CLIENT_ID",
        "pqmon-collector",
        "stable client id so the persistent session survives restarts",
    ),
    ("PQMON_MQTT_SHARE_GROUP", "", "run several collectors: MQTT shared-subscription group (e.g. pqmon)"),
    ("PQMON_INFLUX_URL", "http://127.0.0.1:8086", "InfluxDB base URL (v1-compatible HTTP API)"),
    ("PQMON_INFLUX_DB", "pqmon", "InfluxDB database (1.x) or DBRP-mapped bucket (2.x/3.x)"),
    ("PQMON_INFLUX_TOKEN", "", "API token (InfluxDB 2.x/3.x); sent as 'Authorization: Token ...'"),
    ("PQMON_INFLUX_USER", "", "InfluxDB 1.x user (with PQMON_INFLUX_PASSWORD)"),
    ("PQMON_INFLUX_PASSWORD", "", "InfluxDB 1.x password"),
    ("PQMON_REGISTRY_URL", "", "SQLAlchemy URL of the registry (default: SQLite file in the data dir)"),
    ("PQMON_TZ", "Asia/Shanghai", "local calendar for days, months and reports"),
    ("PQMON_DATA_DIR", "./var", "spool, dead letters, registry file, local servers' data"),
    ("PQMON_SECRET_KEY", "", "dashboard session signing key (default: generated and kept in the data dir)"),
    ("PQMON_DASHBOARD_HOST", "127.0.0.1", "dashboard listen address"),
    ("PQMON_DASHBOARD_PORT", "8050", "dashboard port"),
    (
        "PQMON_LANG",
        "zh-CN",
        "dashboard: language of users who chose none, and of the login page (zh-CN or en)",
    ),
    ("PQMON_SESSION_HOURS", "12", "dashboard: a session ends this many hours after sign-in"),
    (
        "PQMON_TRUSTED_PROXIES",
        "",
        "dashboard: comma-separated addresses of reverse proxies whose X-Forwarded-For is believed"
        " (empty: none; the connecting address is the client's)",
    ),
    ("PQMON_BATCH_SIZE", "5000", "collector: points per InfluxDB write"),
    ("PQMON_FLUSH_INTERVAL_S", "0.5", "collector: longest wait before a partial batch is written"),
    (
        "PQMON_SPOOL_MAX_MESSAGES",
        "1000000",
        "collector: spool bound; at it the collector stops acknowledging",
    ),
    ("PQMON_SPOOL_FSYNC", "false", "collector: fsync every spool commit (survives power loss, slower)"),
    ("PQMON_METRICS_PORT", "9108", "collector: /healthz and /metrics port on the dashboard host (0: off)"),
    ("PQMON_RETENTION_DAYS", "400", "collector: readings older than this are rejected as too old"),
    ("PQMON_LOG_FORMAT", "text", "text, or json for one JSON object per log line"),
    (
        "PQMON_ENV_FILE",
        "",
        "settings of a running `pqmon up` (KEY=VALUE lines it writes and removes), read when neither"
        " PQMON_MQTT_URL, PQMON_INFLUX_URL, PQMON_REGISTRY_URL nor PQMON_CONFIG is set"
        " (empty: <data dir>/pqmon.env; none: never)",
    ),
    ("PQMON_WORKER_INTERVAL_S", "60", "worker: seconds between analysis passes"),
    ("PQMON_LOOKBACK_DAYS", "90", "worker: how far back late data is taken into account"),
    (
        "PQMON_WORKER_CLAIM_LEASE_S",
        "60",
        "worker, registry on PostgreSQL: a worker holds the sites it claimed this long past its last"
        " renewal (a thread renews them every third of it while they are computed); a worker killed"
        " meanwhile leaves them to the others after it",
    ),
    ("PQMON_OUTAGE_AS_UNDER", "false", "count outage minutes as under-limit instead of excluding them"),
    ("PQMON_SHORT_OUTAGE_S", "180", "short interruption threshold (180 s DL/T 836, 300 s IEEE 1366)"),
    (
        "PQMON_ALERTS_FILE",
        "",
        "alerts: TOML file of notification channels and alert policy (empty: alerts are recorded, not sent)",
    ),
    (
        "PQMON_LAST_MILE_TARGET_VQR_PCT",
        "99",
        "fleet report: an account is on the last-mile list when its feeder's VQR is at or above this"
        " and its own is below it",
    ),
    ("PQMON_CELID_SINGLE_H", "3", "fleet report: CELID-s counts accounts with one interruption this long"),
    ("PQMON_CELID_TOTAL_H", "8", "fleet report: CELID-t counts accounts interrupted this long in total"),
    (
        "PQMON_MED_MIN_HISTORY_DAYS",
        "365",
        "fleet report: days of stored history before the period needed to set T_MED from history"
        " (fewer: from the period itself)",
    ),
    ("PQMON_MED_HISTORY_YEARS", "5", "fleet report: at most this many years of history set T_MED"),
    ("PQMON_MED_DDOF", "1", "fleet report: T_MED's standard deviation, 1 sample or 0 population"),
    (
        "PQMON_EN50160_MIN_COVERAGE_PCT",
        "80",
        "report: an EN 50160 week with fewer valid 10-minute values than this share is insufficient_data",
    ),
    ("PQMON_UTILITY_NAME", "", "reports: the utility's name on report covers and the seal line"),
    (
        "PQMON_REPORT_DIR",
        "",
        "reports: where issued monthly reports are archived (default: reports/ in the data dir)",
    ),
    (
        "PQMON_REPORT_WORKERS",
        "1",
        "reports: processes issuing the monthly archive, at low priority and paused during analysis passes"
        " (on 2 cores 1 is fastest: InfluxDB needs the other)",
    ),
    (
        "PQMON_REPORT_DELAY_H",
        "6",
        "reports: hours after a month ends before the worker issues its reports (late data arrives first)",
    ),
)


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    tls: bool
    username: str | None
    password: Secret | None


@dataclass(frozen=True)
class Settings:
    mqtt_url: str
    mqtt_ca_file: str
    mqtt_client_id: str
    mqtt_share_group: str
    influx_url: str
    influx_db: str
    influx_token: Secret
    influx_user: str
    influx_password: Secret
    registry_url: str
    tz: str
    data_dir: Path
    secret_key: Secret
    dashboard_host: str
    dashboard_port: int
    lang: str
    session_hours: float
    trusted_proxies: tuple[str, ...]
    batch_size: int
    spool_max_messages: int
    spool_fsync: bool
    metrics_port: int
    retention_days: int
    log_format: str
    flush_interval_s: float
    worker_interval_s: float
    lookback_days: int
    worker_claim_lease_s: float
    outage_as_under: bool
    short_outage_s: float
    alerts_file: str
    last_mile_target_vqr_pct: float
    celid_single_h: float
    celid_total_h: float
    med_min_history_days: int
    med_history_years: int
    med_ddof: int
    en50160_min_coverage_pct: float
    utility_name: str = ""
    report_dir: Path = Path("var/reports")
    report_workers: int = 1
    report_delay_h: float = 6.0
    extra: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def mqtt(self) -> MqttTarget:
        return parse_mqtt_url(self.mqtt_url)


def parse_mqtt_url(url: str) -> MqttTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"PQMON_MQTT_URL must start with mqtt:// or mqtts://, got {parts.scheme or url!r}")
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=Secret(unquote(parts.password)) if parts.password else None,
    )


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _number(name: str, raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _percent(name: str, raw: str) -> float:
    value = float(_number(name, raw, float))
    if value > 100:
        raise ConfigError(f"{name} is a percentage: more than 0 and at most 100, got {raw!r}")
    return value


def _ddof(name: str, raw: str) -> int:
    """Delta degrees of freedom of a standard deviation: only the sample (1) and population (0) make sense."""
    if raw.strip() not in ("0", "1"):
        raise ConfigError(f"{name} must be 1 (sample standard deviation) or 0 (population), got {raw!r}")
    return int(raw)


def _port(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name} must be a port number (0 to 65535), got {raw!r}")
    return value


# Settings that say which servers to use: one of them set by hand means the up file is not read.
EXPLICIT_SERVER_VARS = ("PQMON_MQTT_URL", "PQMON_INFLUX_URL", "PQMON_REGISTRY_URL", "PQMON_CONFIG")
UP_PID_VAR = "PQMON_UP_PID"  # in the up file: the process that wrote it, so a stale file is known


def up_env_file(env: Mapping[str, str]) -> Path | None:
    """Where ``pqmon up`` writes the settings of the stack it runs, for ``env``'s data dir."""
    named = env.get("PQMON_ENV_FILE", "")
    if named.strip().lower() == "none":
        return None
    if named:
        return Path(named).expanduser()
    return Path(env.get("PQMON_DATA_DIR") or "./var").expanduser() / "pqmon.env"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (``#`` comments and blank lines skipped, no quoting)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _from_up(env: Mapping[str, str]) -> dict[str, str]:
    """The settings of a running ``pqmon up`` in this data dir, so that ``pqmon report A001``
    typed in another shell of the same checkout reaches the demo stack.

    Why so careful: a command configured by hand (any server setting, or a config file) never
    reads it, so a production command is never half pointed at a demo; a file left by an ``up``
    that was killed is ignored with a warning saying so, not followed to dead ports."""
    if any(env.get(name) for name in EXPLICIT_SERVER_VARS):
        return {}
    path = up_env_file(env)
    if path is None or not path.is_file():
        return {}
    try:
        values = read_env_file(path)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    pid = values.pop(UP_PID_VAR, "")
    if pid.isdigit() and not _pid_alive(int(pid)):
        # Not an error: `pqmon up` itself must start after a crash. The warning comes before
        # whatever "cannot reach" error the default settings then lead to.
        logging.getLogger(__name__).warning(
            "pqmon: ignoring %s: the `pqmon up` that wrote it (pid %s) is no longer running;"
            " start it again with `pqmon up`, or delete the file",
            path,
            pid,
        )
        return {}
    return {k: v for k, v in values.items() if k.startswith("PQMON_")}


def load_settings(environ: Mapping[str, str] | None = None, *, up_file: bool | None = None) -> Settings:
    """Build the settings from ``environ`` (default: ``os.environ``), then check them.

    Lowest first: the defaults, the settings of a running ``pqmon up`` (:func:`_from_up`; only
    for the process environment unless ``up_file`` says otherwise), ``PQMON_CONFIG``, the
    environment.
    """
    env = dict(os.environ if environ is None else environ)
    merged: dict[str, str] = {name: default for name, default, _ in SETTINGS}
    if environ is None if up_file is None else up_file:
        merged.update(_from_up(env))
    config_file = env.get("PQMON_CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                from_file = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"PQMON_CONFIG={config_file}: {exc}") from None
        merged.update({k: str(v) for k, v in from_file.items() if k.startswith("PQMON_")})
    merged.update({k: v for k, v in env.items() if k.startswith("PQMON_")})

    data_dir = Path(merged["PQMON_DATA_DIR"]).expanduser()
    registry_url = merged["PQMON_REGISTRY_URL"] or f"sqlite:///{(data_dir / 'registry.db').absolute()}"
    try:
        ZoneInfo(merged["PQMON_TZ"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"PQMON_TZ={merged['PQMON_TZ']!r} is not a known time zone") from None

    settings = Settings(
        mqtt_url=merged["PQMON_MQTT_URL"],
        mqtt_ca_file=merged["PQMON_MQTT_CA_FILE"],
        mqtt_client_id=merged["PQMON_MQTT_CLIENT_ID"],
        mqtt_share_group=merged["PQMON_MQTT_SHARE_GROUP"],
        influx_url=merged["PQMON_INFLUX_URL"].rstrip("/"),
        influx_db=merged["PQMON_INFLUX_DB"],
        influx_token=Secret(merged["PQMON_INFLUX_TOKEN"]),
        influx_user=merged["PQMON_INFLUX_USER"],
        influx_password=Secret(merged["PQMON_INFLUX_PASSWORD"]),
        registry_url=registry_url,
        tz=merged["PQMON_TZ"],
        data_dir=data_dir,
        secret_key=Secret(merged["PQMON_SECRET_KEY"]),
        dashboard_host=merged["PQMON_DASHBOARD_HOST"],
        dashboard_port=_port("PQMON_DASHBOARD_PORT", merged["PQMON_DASHBOARD_PORT"]),
        lang=merged["PQMON_LANG"],
        session_hours=float(_number("PQMON_SESSION_HOURS", merged["PQMON_SESSION_HOURS"], float)),
        trusted_proxies=tuple(a.strip() for a in merged["PQMON_TRUSTED_PROXIES"].split(",") if a.strip()),
        batch_size=int(_number("PQMON_BATCH_SIZE", merged["PQMON_BATCH_SIZE"], int)),
        spool_max_messages=int(_number("PQMON_SPOOL_MAX_MESSAGES", merged["PQMON_SPOOL_MAX_MESSAGES"], int)),
        spool_fsync=_flag("PQMON_SPOOL_FSYNC", merged["PQMON_SPOOL_FSYNC"]),
        metrics_port=_port("PQMON_METRICS_PORT", merged["PQMON_METRICS_PORT"]),
        retention_days=int(_number("PQMON_RETENTION_DAYS", merged["PQMON_RETENTION_DAYS"], int)),
        log_format=merged["PQMON_LOG_FORMAT"],
        flush_interval_s=float(_number("PQMON_FLUSH_INTERVAL_S", merged["PQMON_FLUSH_INTERVAL_S"], float)),
        worker_interval_s=float(_number("PQMON_WORKER_INTERVAL_S", merged["PQMON_WORKER_INTERVAL_S"], float)),
        lookback_days=int(_number("PQMON_LOOKBACK_DAYS", merged["PQMON_LOOKBACK_DAYS"], int)),
        worker_claim_lease_s=float(
            _number("PQMON_WORKER_CLAIM_LEASE_S", merged["PQMON_WORKER_CLAIM_LEASE_S"], float)
        ),
        outage_as_under=_flag("PQMON_OUTAGE_AS_UNDER", merged["PQMON_OUTAGE_AS_UNDER"]),
        short_outage_s=float(_number("PQMON_SHORT_OUTAGE_S", merged["PQMON_SHORT_OUTAGE_S"], float)),
        alerts_file=merged["PQMON_ALERTS_FILE"],
        last_mile_target_vqr_pct=_percent(
            "PQMON_LAST_MILE_TARGET_VQR_PCT", merged["PQMON_LAST_MILE_TARGET_VQR_PCT"]
        ),
        celid_single_h=float(_number("PQMON_CELID_SINGLE_H", merged["PQMON_CELID_SINGLE_H"], float)),
        celid_total_h=float(_number("PQMON_CELID_TOTAL_H", merged["PQMON_CELID_TOTAL_H"], float)),
        med_min_history_days=int(
            _number("PQMON_MED_MIN_HISTORY_DAYS", merged["PQMON_MED_MIN_HISTORY_DAYS"], int)
        ),
        med_history_years=int(_number("PQMON_MED_HISTORY_YEARS", merged["PQMON_MED_HISTORY_YEARS"], int)),
        med_ddof=_ddof("PQMON_MED_DDOF", merged["PQMON_MED_DDOF"]),
        en50160_min_coverage_pct=_percent(
            "PQMON_EN50160_MIN_COVERAGE_PCT", merged["PQMON_EN50160_MIN_COVERAGE_PCT"]
        ),
        utility_name=merged["PQMON_UTILITY_NAME"].strip(),
        report_dir=Path(merged["PQMON_REPORT_DIR"]).expanduser()
        if merged["PQMON_REPORT_DIR"]
        else data_dir / "reports",
        report_workers=int(_number("PQMON_REPORT_WORKERS", merged["PQMON_REPORT_WORKERS"], int)),
        report_delay_h=float(_number("PQMON_REPORT_DELAY_H", merged["PQMON_REPORT_DELAY_H"], float)),
    )
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    parse_mqtt_url(s.mqtt_url)
    if s.mqtt_share_group and not IDENT.match(s.mqtt_share_group):
        raise ConfigError(
            f"PQMON_MQTT_SHARE_GROUP must be letters, digits, _ . -, got {s.mqtt_share_group!r}"
        )
    if s.lang not in LANGS:
        raise ConfigError(f"PQMON_LANG must be one of {', '.join(LANGS)}, got {s.lang!r}")
    for address in s.trusted_proxies:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"PQMON_TRUSTED_PROXIES: {address!r} is not an IP address") from None
    if s.log_format not in ("text", "json"):
        raise ConfigError(f"PQMON_LOG_FORMAT must be text or json, got {s.log_format!r}")
    if s.influx_token and (s.influx_user or s.influx_password):
        raise ConfigError(
            "Set either PQMON_INFLUX_TOKEN or PQMON_INFLUX_USER/PQMON_INFLUX_PASSWORD, not both"
        )
    if bool(s.influx_user) != bool(s.influx_password):
        raise ConfigError("PQMON_INFLUX_USER and PQMON_INFLUX_PASSWORD must be set together")
    if s.med_min_history_days > s.med_history_years * 366:
        raise ConfigError(
            f"PQMON_MED_MIN_HISTORY_DAYS={s.med_min_history_days} can never be met with"
            f" PQMON_MED_HISTORY_YEARS={s.med_history_years}; lower the first or raise the second"
        )
    if not urlsplit(s.influx_url).scheme.startswith("http"):
        raise ConfigError(f"PQMON_INFLUX_URL must be an http(s) URL, got {s.influx_url!r}")


def setting_names() -> list[str]:
    return [name for name, _, _ in SETTINGS]


__all__ = ["Settings", "Secret", "load_settings", "parse_mqtt_url", "SETTINGS"]

"""The production deployment files: docker-compose.yml, .env.example, the Dockerfile and requirements.lock.

Compose files are checked by Debian's ``docker-compose`` (1.29; scripts/test.sh installs it): the
tests fail, not skip, when it is missing. Its YAML output is read with the YAML library its own
interpreter has (pqmon does not depend on one). No Docker daemon is needed. About 5 s in all.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from core.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"

SETTING_NAMES = [name for name, _, _ in SETTINGS]
PQMON_SERVICES = {
    "migrate",
    "collector-1",
    "collector-2",
    "worker",
    "dashboard",
    "alerts",
    "cli",
    "demo-seed",
    "simulator",
}
ONE_SHOT = {"migrate", "cli", "demo-seed"}
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")
# What a test fills the empty secrets of .env.example with: found verbatim in the output = leaked.
FILLED = "T3st0nly0f7hisSu1te"


def env_values(text: str) -> dict[str, str]:
    """``NAME=value`` lines (comments and blanks skipped)."""
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            found[name.strip()] = value.split(" #")[0].strip()
    return found


def compose_bin() -> str:
    found = shutil.which("docker-compose")
    assert found, "docker-compose is not installed: apt-get install docker-compose (scripts/test.sh does)"
    return found


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: the variables of the test run must not stand in for .env's.
    return subprocess.run(
        [
            compose_bin(),
            "-f",
            str(COMPOSE),
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(env_file.parent)},
        check=False,
    )


def parse_yaml(text: str) -> Any:
    """YAML to Python with docker-compose's interpreter (its script's #! line), through JSON."""
    interpreter = Path(compose_bin()).read_text().splitlines()[0].removeprefix("#!").strip().split()
    done = subprocess.run(
        [*interpreter, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def filled_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """.env.example with its empty secrets filled in, as an operator would."""
    text = ENV_EXAMPLE.read_text()
    empty = [name for name, value in env_values(text).items() if value == ""]
    assert empty, ".env.example should leave its secrets empty"
    for name in empty:
        text = re.sub(rf"^{name}=$", f"{name}={FILLED}{name.lower().replace('_', '')}", text, flags=re.M)
    path = tmp_path_factory.mktemp("env") / ".env"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def config(filled_env: Path) -> dict[str, Any]:
    done = compose(filled_env, "--profile", "postgres", "--profile", "demo", "--profile", "tools", "config")
    assert done.returncode == 0, done.stderr
    return parse_yaml(done.stdout)


# -- docker-compose.yml ---------------------------------------------------------------------


def test_compose_is_valid_with_the_env_example_filled_in(filled_env: Path) -> None:
    done = compose(filled_env, "config", "-q")
    assert done.returncode == 0, done.stderr
    done = compose(filled_env, "--profile", "postgres", "--profile", "demo", "config", "-q")
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_start_while_a_secret_is_empty() -> None:
    """.env.example as shipped: compose stops and names the missing secret."""
    done = compose(ENV_EXAMPLE, "config", "-q")
    assert done.returncode != 0
    assert re.search(
        r"set (INFLUX_ADMIN_PASSWORD|INFLUX_ADMIN_TOKEN|PQMON_INFLUX_TOKEN|MQTT_COLLECTOR_PASSWORD|PQMON_SECRET_KEY) in \.env",
        done.stderr,
    ), done.stderr


def test_every_long_running_service_has_a_health_check(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) >= PQMON_SERVICES | {"influxdb", "mosquitto", "postgres"}
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart", "no") == "no", f"{name} is a one-shot"
            continue
        check = svc.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no health check"
        assert svc.get("restart") == "unless-stopped", f"{name} should be restarted"


def test_pqmon_health_checks_name_their_service(config: dict[str, Any]) -> None:
    expected = {
        "collector-1": "collector",
        "collector-2": "collector",
        "worker": "worker",
        "dashboard": "dashboard",
        "alerts": "alerts",
        "simulator": "mqtt",
    }
    for name, target in expected.items():
        assert config["services"][name]["healthcheck"]["test"] == ["CMD", "pqmon", "health", target]


def test_every_pqmon_service_waits_for_migrate(config: dict[str, Any]) -> None:
    services = config["services"]
    migrate = services["migrate"]
    assert "pqmon db upgrade" in " ".join(migrate["entrypoint"])
    for name in PQMON_SERVICES - {"migrate"}:
        deps = services[name].get("depends_on", {})
        assert deps.get("migrate", {}).get("condition") == "service_completed_successfully", name
    for name in ("collector-1", "collector-2", "worker", "dashboard", "alerts"):
        deps = services[name]["depends_on"]
        assert deps["influxdb"]["condition"] == "service_healthy", name
    for name in ("collector-1", "collector-2"):
        assert services[name]["depends_on"]["mosquitto"]["condition"] == "service_healthy", name


def test_two_collectors_share_one_subscription(config: dict[str, Any]) -> None:
    collectors = {n: s for n, s in config["services"].items() if s.get("command") == ["collector"]}
    assert len(collectors) == 2
    envs = [s["environment"] for s in collectors.values()]
    assert envs[0]["PQMON_MQTT_SHARE_GROUP"] == envs[1]["PQMON_MQTT_SHARE_GROUP"] == "pqmon"
    assert envs[0]["PQMON_MQTT_CLIENT_ID"] != envs[1]["PQMON_MQTT_CLIENT_ID"]
    data = [mounts(s)["/var/lib/pqmon/data"] for s in collectors.values()]
    assert data[0] != data[1], "each collector needs its own spool"


def test_influxdb_is_set_up_with_a_dbrp_mapping(config: dict[str, Any]) -> None:
    influx = config["services"]["influxdb"]
    assert influx["image"].startswith("influxdb:2.7")
    env = influx["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert (
        env["DOCKER_INFLUXDB_INIT_BUCKET"] == config["services"]["worker"]["environment"]["PQMON_INFLUX_DB"]
    )
    scripts = sorted(Path(mounts(influx)["/docker-entrypoint-initdb.d"]).glob("*.sh"))
    assert scripts and all(s.stat().st_mode & 0o111 for s in scripts), "the image runs executable *.sh only"
    text = "".join(s.read_text() for s in scripts)
    assert re.search(
        r"influx v1 dbrp create --db \"\$bucket\" --rp autogen --bucket-id \"\$bucket_id\" --default", text
    )


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes (short or long syntax)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        found[target] = source
    return found


def test_no_literal_secret_in_the_compose_file(config: dict[str, Any]) -> None:
    """Every secret is a ``${VAR...}`` in the file, and what the config renders comes from .env."""
    for line in COMPOSE.read_text().splitlines():
        key = re.match(r"\s*([A-Z][A-Z0-9_]*):\s*(\S.*)?$", line)
        if key and any(w in key.group(1) for w in SECRET_WORDS) and key.group(2):
            assert key.group(2).startswith("${"), f"written in docker-compose.yml: {line.strip()}"
        assert not re.search(r"://[^:/@\s]+:[^$@\s]+@", line), f"a literal password in a URL: {line.strip()}"
    for name, svc in config["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if any(w in key for w in SECRET_WORDS) and value:
                assert FILLED in str(value), f"{name}.{key}={value!r} does not come from .env"
        for key in ("PQMON_MQTT_URL", "PQMON_REGISTRY_URL"):
            url = (svc.get("environment") or {}).get(key, "")
            password = re.match(r"\w+://[^:/@]+:([^@]*)@", url)
            if password:
                assert FILLED in password.group(1), f"{name}.{key} has a password not from .env"


def test_compose_defaults_are_pqmons(config: dict[str, Any]) -> None:
    """``${PQMON_X:-default}`` in the file must be core/settings.py's default, where compose does not
    mean to differ (the share group: two collectors; the registry and the InfluxDB URL: containers)."""
    defaults = {name: default for name, default, _ in SETTINGS}
    differ = {"PQMON_MQTT_SHARE_GROUP", "PQMON_REGISTRY_URL", "PQMON_INFLUX_URL"}
    found = re.findall(r"\$\{(PQMON_\w+):-([^}]*)\}", COMPOSE.read_text())
    assert len(found) > 30
    assert {name for name, _ in found} <= set(defaults), "a compose variable named like a pqmon setting"
    for name, default in found:
        if name not in differ:
            assert default == defaults[name], (
                f"{name}: compose default {default!r}, pqmon's {defaults[name]!r}"
            )


def test_every_setting_reaches_the_services(config: dict[str, Any]) -> None:
    seen: set[str] = set()
    for name in PQMON_SERVICES:
        seen |= {k for k in config["services"][name].get("environment", {}) if k.startswith("PQMON_")}
    assert set(SETTING_NAMES) <= seen, f"not wired in docker-compose.yml: {sorted(set(SETTING_NAMES) - seen)}"


# -- .env.example ---------------------------------------------------------------------------


def test_env_example_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    missing = [n for n in SETTING_NAMES if not re.search(rf"^#? ?{n}=", text, flags=re.M)]
    assert not missing, f".env.example lacks {missing}"


def test_env_example_holds_no_real_secret() -> None:
    """Secrets are empty (compose refuses them); a value that looks like a token or password fails."""
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#? ?([A-Z0-9_]+)=(\S*)", line.strip())
        if not match:
            continue
        name, value = match.groups()
        if any(w in name for w in SECRET_WORDS):
            assert value == "", f"{name} has a value in .env.example: {value!r}"
        assert not re.search(r"[A-Za-z0-9+/_-]{24,}={0,2}$", value) or value.startswith(("./", "/")), (
            f"{name}={value!r} looks like a real token"
        )
        assert not re.search(r"://[^:/@]+:[^<@]+@", value), f"{name} has a password in its URL"


# -- Dockerfile and requirements.lock ---------------------------------------------------------


def dockerfile_lines() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def final_stage() -> list[str]:
    lines = dockerfile_lines()
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    assert len(starts) >= 2, "multi-stage: build in one stage, run in a slim one"
    return lines[starts[-1] :]


def test_dockerfile_runs_as_a_non_root_user_with_a_health_check() -> None:
    stage = final_stage()
    users = [i for i, line in enumerate(stage) if line.upper().startswith("USER ")]
    starts = [i for i, line in enumerate(stage) if line.upper().startswith(("ENTRYPOINT", "CMD"))]
    assert users and starts and users[-1] < min(starts), "USER must come before ENTRYPOINT/CMD"
    user = stage[users[-1]].split()[1].split(":")[0]
    assert user not in ("root", "0")
    assert any(line.upper().startswith("HEALTHCHECK ") and "pqmon" in line for line in stage)
    assert "slim" in stage[0]
    assert any("fonts-wqy-microhei" in line for line in stage)
    assert any(line.startswith("COPY --from=") for line in stage)


def test_dockerfile_sets_no_secret() -> None:
    for line in dockerfile_lines():
        word = line.split()[0].upper()
        if word in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|TOKEN|SECRET|_KEY\b", line, flags=re.I), line


def test_dockerfile_installs_from_the_lock_with_hashes() -> None:
    lines = dockerfile_lines()
    install = [line for line in lines if "pip install" in line and "requirements.lock" in line]
    assert install and all("--require-hashes" in line for line in install)
    assert any("pip install --no-deps" in line and re.search(r"\s\.(\s|$)", line) for line in lines)
    copies = " ".join(line for line in lines if line.startswith("COPY "))
    for package in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
        "find"
    ]["include"]:
        name = package.rstrip("*")
        assert re.search(rf"COPY {name} {name}\b", copies), f"the image lacks the {name}/ package"


def lock_pins() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    text = LOCK.read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            pins[normal(match.group(1))] = (
                match.group(2),
                len(re.findall(r"--hash=sha256:[0-9a-f]{64}", block)),
            )
    return pins


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_dependency_is_pinned_with_hashes() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = lock_pins()
    assert all(hashes >= 1 for _, hashes in pins.values()), "a pin without --hash"
    wanted = pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]
    for requirement in wanted:
        name = normal(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))  # type: ignore[union-attr]
        assert name in pins, f"{name} is not pinned in requirements.lock: run scripts/lock.sh"
        for extra in re.findall(r"\[([^\]]+)\]", requirement.split(";")[0]):
            for part in extra.split(","):
                if normal(f"{name}-{part}") in ("psycopg-binary",):
                    assert normal(f"{name}-{part}") in pins


def test_lock_script_uses_hashes() -> None:
    text = (ROOT / "scripts" / "lock.sh").read_text()
    assert "--generate-hashes" in text and "requirements.lock" in text

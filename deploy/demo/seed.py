"""The demo profile's one-shot set-up (docker-compose.yml, service demo-seed), run in the pqmon image.

Registers the simulator's fleet and the four demo users (password DEMO_PASSWORD), then writes the
broker's password file and ACL like ``pqmon broker credentials`` (the collector user with
MQTT_COLLECTOR_PASSWORD) plus one user ``pqmon-simulator`` (DEMO_MQTT_PASSWORD) that may publish
for every meter, since the simulator speaks for the whole fleet over one user name. Mosquitto's
start script sees the new files and reloads them. A demonstration only: on a real installation
every meter has its own credential and nothing may publish for all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from collector.broker import write_credentials
from core.registry import Registry
from core.settings import load_settings
from pqmon.stack import seed_registry
from simulator.fleet import make_fleet

SIMULATOR_USER = "pqmon-simulator"


def _secret(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"demo-seed: set {name} in .env (letters and digits, e.g. openssl rand -hex 16)")
    return value


def main() -> int:
    demo_password, mqtt_password = _secret("DEMO_PASSWORD"), _secret("DEMO_MQTT_PASSWORD")
    collector_password = _secret("MQTT_COLLECTOR_PASSWORD")
    settings = load_settings()
    broker_dir = Path(os.environ.get("BROKER_DIR", "/etc/pqmon/broker"))
    fleet = make_fleet(int(os.environ.get("DEMO_ACCOUNTS", "50")), int(os.environ.get("DEMO_SEED", "1")))
    registry = Registry(settings.registry_url)
    try:
        logins = seed_registry(
            registry,
            fleet,
            int(time.time() * 1000),
            float(os.environ.get("DEMO_DAYS", "7")),
            password=demo_password,
        )
        write_credentials(registry, broker_dir, "pqmon-collector", collector_password)
    finally:
        registry.close()
    passwd = broker_dir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), SIMULATOR_USER, mqtt_password], check=True)
    with (broker_dir / "acl").open("a") as fh:
        fh.write(f"# demo profile only: the simulator publishes for every meter\nuser {SIMULATOR_USER}\n")
        fh.write("topic write pq/v1/#\n")
    print(
        f"demo fleet of {len(fleet.accounts)} accounts registered; dashboard users {logins.admin},"
        f" {logins.operator}, {logins.manager} and {logins.customer} (password DEMO_PASSWORD);"
        f" broker credentials written to {broker_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

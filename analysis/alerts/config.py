"""Alert configuration: the channels and the policy, from the TOML file named by
``PQMON_ALERTS_FILE``. Read and checked at start-up, so a channel that cannot work stops the
service with a message naming the field, rather than failing at 3 a.m. when it is needed.

```toml
[policy]
incident_window_s = 60     # outages of one feeder starting this close are one incident
fleet_fraction = 0.5       # ...and of more than this share of all key accounts, one fleet incident
group_interval_s = 30      # at most one update of an incident this often
renotify_min = 30          # unacknowledged: remind this often
escalate_after_min = 15    # unacknowledged this long: page the escalation group once

[channels.ops-webhook]
type = "webhook"           # webhook, dingtalk, wecom, email, mqtt
url = "https://ops.example/hooks/pqmon"
group = "ops"              # ops (every page) or escalation
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

from analysis.alerts.engine import ESCALATION, OPS, AlertPolicy, Routes
from core.errors import ConfigError
from core.settings import Settings

NOTICES = "notices"  # a channel only for planned-outage notices ([notices] email_channel): pages no one
GROUPS = (OPS, ESCALATION, NOTICES)
POLICY_KEYS = {
    "incident_window_s": ("incident_window_s", 1.0),
    "group_interval_s": ("group_interval_s", 1.0),
    "renotify_min": ("renotify_s", 60.0),
    "escalate_after_min": ("escalate_after_s", 60.0),
    "claim_timeout_s": ("claim_timeout_s", 1.0),
    "fleet_fraction": ("fleet_fraction", 1.0),
}


@dataclass(frozen=True)
class AlertConfig:
    policy: AlertPolicy
    routes: Routes
    channels: dict[str, Any]  # name -> Channel (analysis.alerts.channels)
    rules: Any = None  # ConditionRule: global voltage and silence thresholds
    rule_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # "class:10", "site:A001"
    notices: Any = None  # NoticePolicy: planned-outage notices to customers ([notices])
    subscription_email: str | None = None  # [subscriptions] email_channel: users' own addresses


def _read(path: str) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"PQMON_ALERTS_FILE={path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"PQMON_ALERTS_FILE={path}: not valid TOML ({exc})") from None


def parse(raw: dict[str, Any], tz: str, source: str = "PQMON_ALERTS_FILE") -> AlertConfig:
    from analysis.alerts.channels import channel_from_config
    from analysis.alerts.notices import parse_notices
    from analysis.alerts.voltage import parse_rules

    known = {"policy", "channels", "rules", "notices", "subscriptions"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}"
        )
    values: dict[str, float] = {}
    for key, value in (raw.get("policy") or {}).items():
        if key not in POLICY_KEYS:
            raise ConfigError(f"{source}: [policy] {key} is not a setting; expected {', '.join(POLICY_KEYS)}")
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{source}: [policy] {key} must be a positive number, got {value!r}")
        if key == "fleet_fraction" and value > 1:
            raise ConfigError(
                f"{source}: [policy] fleet_fraction is a share of the accounts, at most 1, got {value!r}"
            )
        name, scale = POLICY_KEYS[key]
        values[name] = float(value) * scale
    policy = AlertPolicy(tz=tz, **values)
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    channels: dict[str, Any] = {}
    for name, cfg in (raw.get("channels") or {}).items():
        if not isinstance(cfg, dict):
            raise ConfigError(f"{source}: [channels.{name}] must be a table")
        group = cfg.get("group", OPS)
        if group not in GROUPS:
            raise ConfigError(
                f"{source}: [channels.{name}] group must be ops, escalation or notices, got {group!r}"
            )
        channels[name] = channel_from_config(name, {k: v for k, v in cfg.items() if k != "group"})
        groups[group].append(name)
    base, overrides = parse_rules(raw.get("rules") or {}, source)
    emails = [
        n for n, c in (raw.get("channels") or {}).items() if isinstance(c, dict) and c.get("type") == "email"
    ]
    notices = parse_notices(raw.get("notices") or {}, tz, emails, source)
    subs = raw.get("subscriptions") or {}
    bad = set(subs) - {"email_channel"}
    if bad:
        raise ConfigError(f"{source}: [subscriptions] {', '.join(sorted(bad))}: expected email_channel")
    sub_email = subs.get("email_channel")
    if sub_email is not None and sub_email not in emails:
        raise ConfigError(
            f"{source}: [subscriptions] email_channel {sub_email!r} is not an email channel;"
            f" known: {', '.join(emails) or 'none'}"
        )
    return AlertConfig(policy, Routes(groups), channels, base, overrides, notices, sub_email)


def load(settings: Settings) -> AlertConfig:
    return parse(_read(settings.alerts_file), settings.tz)


def load_routes(settings: Settings) -> Routes:
    return load(settings).routes


def alert_policy(settings: Settings) -> AlertPolicy:
    return load(settings).policy

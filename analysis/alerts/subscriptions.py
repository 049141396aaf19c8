"""Per-user alert subscriptions: which accounts, from which severity, on which channel, and
quiet hours.

Besides the configured channels (``[channels.*]``, the duty roster's), a user may subscribe
their own e-mail address or robot. A subscription receives an incident's notifications only
when the user may see every account of it (a manager never learns of another manager's
account through a fleet incident), the accounts are among those it names (none named: all
the user's), and the severity is at least its own. During its quiet hours (local time)
notifications below ``critical`` wait until the hours end; outages (critical) always go at
once. Deliveries go through the same outbox as every other notification, so they are sent
once, retried and logged like them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from core.errors import ConfigError
from core.registry import Base, Registry

SEVERITIES = ("minor", "major", "critical")
CHANNELS = ("email", "webhook", "dingtalk", "wecom")
PREFIX = "sub:"  # outbox channel names of subscriptions: "sub:<id>"
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class SubscriptionRow(Base):
    __tablename__ = "alert_subscription"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("app_user.name", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(500))  # e-mail address or robot/webhook URL
    secret: Mapped[str | None] = mapped_column(String(200), nullable=True)  # DingTalk signing
    min_severity: Mapped[str] = mapped_column(String(16))
    sites: Mapped[str] = mapped_column(Text, default="")  # comma-separated; "" = all the user's
    quiet: Mapped[str | None] = mapped_column(String(11), nullable=True)  # "22:00-07:00" local
    created_ms: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class Subscription:
    id: int
    user: str
    channel: str
    target: str
    secret: str | None
    min_severity: str
    sites: frozenset[str]
    quiet: str | None

    def wants(self, severity: str, incident_sites: Iterable[str], visible: set[str]) -> bool:
        """Pure: does this subscription get a notification of these sites at this severity?"""
        sites = set(incident_sites)
        if not sites or not sites <= visible:
            return False  # nothing to say, or it would tell of an account the user may not see
        if self.sites and not sites & self.sites:
            return False
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)


def quiet_until(quiet: str | None, now_ms: int, tz: str) -> int | None:
    """Pure: the end of the quiet hours (UTC ms) if ``now_ms`` falls inside them, else None.

    ``"22:00-07:00"`` crosses midnight; ``"12:00-13:00"`` does not; equal ends mean never.
    """
    if not quiet:
        return None
    m = QUIET.match(quiet)
    if m is None:
        return None
    start_min = int(m.group(1)) * 60 + int(m.group(2))
    end_min = int(m.group(3)) * 60 + int(m.group(4))
    if start_min == end_min:
        return None
    local = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    inside = start_min <= minute < end_min if start_min < end_min else minute >= start_min or minute < end_min
    if not inside:
        return None
    end = local.replace(hour=end_min // 60, minute=end_min % 60, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return int(end.timestamp() * 1000)


def check(
    registry: Registry,
    user: str,
    channel: str,
    target: str,
    min_severity: str,
    sites: Sequence[str],
    quiet: str | None,
    secret: str | None = None,
) -> None:
    """Refuse what cannot work, naming the field."""
    account = registry.user(user)
    if account is None:
        raise ConfigError(f"subscription: user {user!r} does not exist or is disabled")
    if channel not in CHANNELS:
        raise ConfigError(f"subscription: channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if channel == "email" and not EMAIL.match(target):
        raise ConfigError(f"subscription: to {target!r} is not an e-mail address")
    if channel != "email" and not target.startswith(("https://", "http://")):
        raise ConfigError(f"subscription: to must be the {channel} URL (http:// or https://), got {target!r}")
    if secret and channel != "dingtalk":
        raise ConfigError("subscription: secret is only for a DingTalk robot's signed mode")
    if min_severity not in SEVERITIES:
        raise ConfigError(
            f"subscription: min severity must be one of {', '.join(SEVERITIES)}, got {min_severity!r}"
        )
    if quiet is not None and not QUIET.match(quiet):
        raise ConfigError(f"subscription: quiet hours must look like 22:00-07:00, got {quiet!r}")
    visible = set(registry.visible_site_ids(account, kind=None))
    unknown = sorted(set(sites) - visible)
    if unknown:
        raise ConfigError(f"subscription: site(s) {', '.join(unknown)} unknown or not visible to {user}")


def subscribe(
    registry: Registry,
    user: str,
    channel: str,
    target: str,
    min_severity: str = "major",
    sites: Sequence[str] = (),
    quiet: str | None = None,
    secret: str | None = None,
) -> int:
    check(registry, user, channel, target, min_severity, sites, quiet, secret)
    with registry._session.begin() as s:
        row = SubscriptionRow(
            user_name=user,
            channel=channel,
            target=target,
            secret=secret or None,
            min_severity=min_severity,
            sites=",".join(sorted(set(sites))),
            quiet=quiet,
            created_ms=int(time.time() * 1000),
        )
        s.add(row)
        s.flush()
        return int(row.id)


def unsubscribe(registry: Registry, subscription_id: int) -> bool:
    with registry._session.begin() as s:
        done = s.execute(delete(SubscriptionRow).where(SubscriptionRow.id == subscription_id))
        return bool(getattr(done, "rowcount", 0))


def subscriptions(registry: Registry, user: str | None = None) -> list[Subscription]:
    q = select(SubscriptionRow).order_by(SubscriptionRow.id)
    if user is not None:
        q = q.where(SubscriptionRow.user_name == user)
    with registry._session() as s:
        return [_subscription(r) for r in s.scalars(q)]


def subscription(registry: Registry, subscription_id: int) -> Subscription | None:
    with registry._session() as s:
        row = s.get(SubscriptionRow, subscription_id)
        return None if row is None else _subscription(row)


def _subscription(r: SubscriptionRow) -> Subscription:
    return Subscription(
        r.id,
        r.user_name,
        r.channel,
        r.target,
        r.secret,
        r.min_severity,
        frozenset(x for x in r.sites.split(",") if x),
        r.quiet,
    )


def channel_for(sub: Subscription, email_base: Any) -> Any:
    """The sender of a subscription: the configured mail server writing to the user's address,
    or a webhook/robot at the user's URL. A DeliveryResult (failed, not retried) when none can be."""
    from analysis.alerts.channels import (
        DeliveryResult,
        DingTalkChannel,
        SmtpChannel,
        WebhookChannel,
        WeComChannel,
        smtp_to,
    )

    name = f"{PREFIX}{sub.id}"
    try:
        if sub.channel == "email":
            if not isinstance(email_base, SmtpChannel):
                return DeliveryResult(
                    False, False, "no e-mail server for subscriptions: set [subscriptions] email_channel"
                )
            return smtp_to(email_base, sub.target, name)
        if sub.channel == "dingtalk":
            return DingTalkChannel(name, sub.target, sub.secret)
        if sub.channel == "wecom":
            return WeComChannel(name, sub.target)
        return WebhookChannel(name, sub.target, {})
    except ConfigError as exc:
        return DeliveryResult(False, False, str(exc)[:300])

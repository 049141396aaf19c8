"""Delivery from the outbox: claim what is due, send each in its own thread, record the result.

A row is claimed with a conditional UPDATE (pending -> sending), so two dispatchers never send
the same row; sent rows are marked in the same breath as their delivery-log entry. A
dispatcher killed between a send and its mark leaves a ``sending`` row that goes back to
pending after ``claim_timeout_s``: the receiver may then see the notification twice, with the
same idempotency key (the outbox id), which is the most any sender can promise. Each
receiver's notifications go out one at a time, in order, in a thread of their own: a kill
leaves at most one of them unrecorded, and a receiver that hangs holds up only itself.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from analysis.alerts.channels import DingTalkChannel, WeComChannel
from analysis.alerts.state import FAILED, PENDING, SENDING, SENT, DeliveryRow, OutboxRow
from core.registry import Registry

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
WATCH_INTERVAL_S = 15.0  # the voltage and silence rules work on whole minutes
# Only group robots limit what they take (20 a minute); webhooks, mail and MQTT get every page now.
RATE_LIMITED = (DingTalkChannel, WeComChannel)
BATCH = 50
DIGEST_MAX_CHARS = 4000  # robots refuse long messages; the rest is in the payload


class Dispatcher:
    def __init__(
        self,
        registry: Registry,
        channels: Mapping[str, Any],
        clock: Callable[[], float] = time.time,
        claim_timeout_s: float = 60.0,
        workers: int = 8,
        subscription_email: str | None = None,
    ) -> None:
        from analysis.alerts.channels import RateLimiter

        self.registry = registry
        self.channels = dict(channels)
        # The configured email channel whose server writes to users' subscribed addresses.
        self.subscription_email = self.channels.get(subscription_email) if subscription_email else None
        self.clock = clock
        self.claim_timeout_ms = int(claim_timeout_s * 1000)
        self._session = sessionmaker(registry.engine, expire_on_commit=False)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alert-send")
        self.limiter = RateLimiter(clock=clock)
        self._busy: dict[str, Future[None]] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def run_once(self, wait: bool = True) -> int:
        """Send what is due now; returns how many rows were taken up.

        With ``wait=False`` (the service) it returns at once, and a receiver whose previous
        queue is still going (a slow or hanging one) is left to it: nobody else waits.
        """
        now = self.now_ms()
        with self._session.begin() as s:
            # Claims left behind by a dispatcher that died go back to the queue.
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.state == SENDING, OutboxRow.claimed_ms < now - self.claim_timeout_ms)
                .values(state=PENDING)
            )
        with self._session() as s:
            due = s.execute(
                select(OutboxRow.id, OutboxRow.channel)
                .where(OutboxRow.state == PENDING, OutboxRow.due_ms <= now)
                .order_by(OutboxRow.due_ms, OutboxRow.id)
                .limit(BATCH)
            ).all()
        # One thread per receiver, its notifications in order, one at a time: a receiver that
        # hangs holds up only itself, and a kill can leave at most one send per receiver
        # unrecorded (so at most one copy each).
        by_channel: dict[str, list[int]] = {}
        for row_id, channel in due:
            by_channel.setdefault(channel, []).append(row_id)
        self._busy = {name: f for name, f in self._busy.items() if not f.done()}
        started = []
        for name, row_ids in by_channel.items():
            if name in self._busy:
                continue
            future = self._pool.submit(self._deliver_in_order, name, row_ids)
            self._busy[name] = future
            started.append((future, len(row_ids)))
        if wait:
            for future, _ in started:
                future.result()
        return sum(n for _, n in started)

    def _deliver_in_order(self, name: str, row_ids: list[int]) -> None:
        channel = self._channel(name)
        if (
            isinstance(channel, RATE_LIMITED)
            and len(row_ids) > 1
            and self.limiter.available(channel.recipient) < len(row_ids)
        ):
            # More waiting than the robot takes now: one digest instead of a queue that lags.
            claimed = [r for r in row_ids if self._claim(r, self.now_ms())]
            if len(claimed) > 1:
                self._deliver_digest(name, channel, claimed)
            elif claimed:
                self._deliver(claimed[0])
            return
        for row_id in row_ids:
            if self._claim(row_id, self.now_ms()):
                self._deliver(row_id)

    def _deliver_digest(self, name: str, channel: Any, row_ids: list[int]) -> None:
        """Send claimed rows as one message; each row records the same result."""
        from analysis.alerts.channels import DeliveryResult, Message

        if not self.limiter.try_take(channel.recipient):
            wait_ms = int(max(0.5, self.limiter.wait_s(channel.recipient)) * 1000)
            for row_id in row_ids:
                self._requeue(row_id, wait_ms, "rate limit: waiting for the receiver's next slot")
            return
        with self._session() as s:
            rows = [s.get(OutboxRow, r) for r in row_ids]
            parts = [(r.title, r.body, json.loads(r.payload), r.severity) for r in rows if r is not None]
        order = ("info", "minor", "major", "critical")
        severity = max((p[3] for p in parts), key=lambda x: order.index(x) if x in order else 0)
        text = "\n\n".join(f"{title}\n{body}" for title, body, _, _ in parts)
        if len(text) > DIGEST_MAX_CHARS:
            text = text[:DIGEST_MAX_CHARS].rsplit("\n", 1)[0] + "\n..."
        message = Message(
            key=f"pqmon-digest-{row_ids[0]}-{row_ids[-1]}",
            kind="digest",
            severity=severity,
            site=None,
            title=f"{len(parts)} notifications (digest: the receiver takes 20 a minute)",
            text=text,
            payload={"kind": "digest", "notifications": [p[2] for p in parts], "outbox": row_ids},
        )
        try:
            result = channel.send(message)
        except Exception as exc:
            log.exception("channel %s raised", name)
            result = DeliveryResult(False, True, f"sender error: {exc!r}"[:300])
        for row_id in row_ids:
            self._record(row_id, name, result)

    def _claim(self, row_id: int, now: int) -> bool:
        with self._session.begin() as s:
            done = s.execute(
                update(OutboxRow)
                .where(OutboxRow.id == row_id, OutboxRow.state == PENDING)
                .values(state=SENDING, claimed_ms=now)
            )
            return bool(getattr(done, "rowcount", 0))

    def _deliver(self, row_id: int) -> None:
        from analysis.alerts.channels import DeliveryResult, Message

        with self._session() as s:
            row = s.get(OutboxRow, row_id)
            if row is None:
                return
            message = Message(
                key=f"pqmon-{row.id}",
                kind=row.kind,
                severity=row.severity,
                site=row.site_id,
                title=row.title,
                text=row.body,
                payload=json.loads(row.payload),
            )
            channel_name = row.channel
        channel = self._channel(channel_name)
        if isinstance(channel, DeliveryResult):
            result = channel
        elif channel is None:
            result = DeliveryResult(False, False, f"channel {channel_name!r} is not configured any more")
        elif isinstance(channel, RATE_LIMITED) and not self.limiter.try_take(channel.recipient):
            wait_ms = int(max(0.5, self.limiter.wait_s(channel.recipient)) * 1000)
            self._requeue(row_id, wait_ms, "rate limit: waiting for the receiver's next slot")
            return
        else:
            try:
                result = channel.send(message)
            except Exception as exc:  # a sender bug must not lose the row
                log.exception("channel %s raised", channel_name)
                result = DeliveryResult(False, True, f"sender error: {exc!r}"[:300])
        self._record(row_id, channel_name, result)

    def _record(self, row_id: int, channel_name: str, result: Any) -> None:
        """The delivery-log entry and the row's next state, in one transaction."""
        from analysis.alerts.channels import backoff_s

        now = self.now_ms()
        with self._session.begin() as s:
            s.add(DeliveryRow(outbox_id=row_id, at_ms=now, ok=result.ok, detail=result.detail[:300]))
            row = s.get(OutboxRow, row_id)
            if row is None:
                return
            row.attempts = row.attempts + 1
            row.last_error = None if result.ok else result.detail[:300]
            if result.ok:
                row.state, row.sent_ms = SENT, now
            elif result.retry and row.attempts < MAX_ATTEMPTS:
                row.state, row.due_ms = PENDING, now + int(backoff_s(row.attempts) * 1000)
            else:
                row.state = FAILED
                log.error("notification %d to %s failed for good: %s", row_id, channel_name, result.detail)

    def _channel(self, name: str) -> Any:
        """A configured channel, or the sender of a personal subscription ("sub:<id>")."""
        from analysis.alerts.channels import DeliveryResult
        from analysis.alerts.subscriptions import PREFIX, channel_for, subscription

        if not name.startswith(PREFIX):
            return self.channels.get(name)
        sub = subscription(self.registry, int(name.removeprefix(PREFIX)))
        if sub is None:
            return DeliveryResult(False, False, "the subscription was removed")
        return channel_for(sub, self.subscription_email)

    def _requeue(self, row_id: int, after_ms: int, why: str) -> None:
        with self._session.begin() as s:
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.id == row_id, OutboxRow.state == SENDING)
                .values(state=PENDING, due_ms=self.now_ms() + after_ms, last_error=why)
            )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for channel in self.channels.values():
            close = getattr(channel, "close", None)
            if close is not None:
                close()


def run_forever(settings: Any, stop: threading.Event, interval_s: float = 0.2) -> None:
    """The alert service: deliver the outbox, re-notify and escalate, release quiet modes."""
    from analysis.alerts.config import load
    from analysis.alerts.engine import AlertEngine
    from analysis.alerts.notices import NoticePolicy, NoticeScheduler
    from analysis.alerts.voltage import ConditionWatch
    from core.store import InfluxStore

    config = load(settings)
    registry = Registry(settings.registry_url)
    engine = AlertEngine(registry, config.routes, config.policy)
    dispatcher = Dispatcher(
        registry,
        config.channels,
        claim_timeout_s=config.policy.claim_timeout_s,
        subscription_email=config.subscription_email,
    )
    notices = NoticeScheduler(  # planned-outage notices to customers; robots share the rate limit
        registry,
        config.notices or NoticePolicy(tz=settings.tz),
        config.channels,
        config.routes,
        claim_timeout_s=config.policy.claim_timeout_s,
        limiter=dispatcher.limiter,
    )
    store = InfluxStore.from_settings(settings)
    watch = ConditionWatch(store, registry, engine, config.rules, config.rule_overrides)
    log.info("alerts: %d channel(s): %s", len(config.channels), ", ".join(config.channels) or "none")
    # The rules on readings take seconds on a large fleet; delivery must not wait for them.
    watcher = threading.Thread(target=_watch_loop, args=(watch, stop), name="alert-watch", daemon=True)
    watcher.start()
    try:
        while not stop.is_set():
            try:
                engine.tick()
                busy = dispatcher.run_once(wait=False)
                busy += notices.run_once(wait=False)
            except Exception:
                log.exception("alert pass failed; retrying")
                busy = 0
            if not busy:
                stop.wait(interval_s)
    finally:
        watcher.join(timeout=30)
        notices.close()
        dispatcher.close()
        store.close()
        registry.close()


def _watch_loop(watch: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        began = time.monotonic()
        try:
            watch.run_once()
        except Exception:
            log.exception("voltage and silence rules failed; retrying in %gs", WATCH_INTERVAL_S)
        stop.wait(max(0.0, WATCH_INTERVAL_S - (time.monotonic() - began)))

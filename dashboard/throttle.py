"""Failed-login throttling, per user name and per client address (README: security).

In-process state: each dashboard process counts its own failures. The clock is
injected so tests can move time without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED_KEYS = 10_000


@dataclass(frozen=True)
class ThrottlePolicy:
    window_s: float = 300.0
    max_per_name: int = 5
    # An address serves many users behind a NAT, so it gets more room than one name.
    max_per_address: int = 20
    lockout_s: float = 300.0


class LoginThrottle:
    """Counts failures in a sliding window and locks a name or address out for a while."""

    def __init__(
        self, policy: ThrottlePolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def _keys(self, name: str, address: str) -> list[tuple[str, int]]:
        return [
            (f"name:{name.strip().lower()[:64]}", self.policy.max_per_name),
            (f"addr:{address}", self.policy.max_per_address),
        ]

    def retry_after_s(self, name: str, address: str) -> float:
        """Seconds until this name/address may try again; 0 when allowed now."""
        now = self._clock()
        with self._lock:
            waits = [self._locked_until.get(key, 0.0) - now for key, _ in self._keys(name, address)]
        return max(0.0, *waits)

    def retry_after_min(self, name: str, address: str) -> int:
        return max(1, math.ceil(self.retry_after_s(name, address) / 60))

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) > MAX_TRACKED_KEYS:
                self._forget_old(now)
            for key, limit in self._keys(name, address):
                recent = self._failures.setdefault(key, deque())
                recent.append(now)
                while recent and recent[0] <= now - self.policy.window_s:
                    recent.popleft()
                if len(recent) >= limit:
                    self._locked_until[key] = now + self.policy.lockout_s

    def succeeded(self, name: str) -> None:
        """A good password clears the name's count (not the address's)."""
        with self._lock:
            key = self._keys(name, "")[0][0]
            self._failures.pop(key, None)
            self._locked_until.pop(key, None)

    def _forget_old(self, now: float) -> None:
        for key in [k for k, q in self._failures.items() if not q or q[-1] <= now - self.policy.window_s]:
            del self._failures[key]
        for key in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[key]

"""Fleet-wide roll-up sums shared by every user of one dashboard process.

Summing a month of daily roll-ups over a thousand accounts costs InfluxDB 1.x about a second
(it walks every series); the overview would pay that on every click. The sums only change
when the worker writes roll-ups, so they are kept per period and dropped when the worker
records a new pass (``worker.last_pass_ms`` in the registry), or after ``max_age_s`` for
roll-ups written around the worker.

What is cached is fleet-wide and carries no user: every caller filters it through its own
authorization afterwards, so nothing can leak from one user's request into another's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RollupCache(Generic[T]):
    def __init__(self, max_entries: int = 16, max_age_s: float = 300.0) -> None:
        self.max_entries, self.max_age_s = max_entries, max_age_s
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[object, ...], tuple[float, T]] = OrderedDict()
        self._building: dict[tuple[object, ...], threading.Lock] = {}
        self.hits = self.misses = 0

    def get(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        """The value for ``key`` (which must include the data version), built once."""
        fresh = self._fresh(key)
        if fresh is not None:
            return fresh
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:  # concurrent first requests for one period query the store once
            fresh = self._fresh(key)
            if fresh is not None:
                return fresh
            value = build()
            with self._lock:
                self.misses += 1
                self._entries[key] = (time.monotonic(), value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                self._building.pop(key, None)
            return value

    def _fresh(self, key: tuple[object, ...]) -> T | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None or time.monotonic() - found[0] > self.max_age_s:
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return found[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

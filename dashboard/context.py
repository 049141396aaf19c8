"""What every request of one dashboard app shares: settings, registry, store, throttle.

Kept on the Flask app (``app.extensions``) rather than in module globals, so pages
and callbacks find the objects of the app that is serving them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from core.accounts import Accounts
from core.registry import Registry
from core.settings import Settings
from core.store import InfluxStore
from dashboard.rollup_cache import RollupCache
from dashboard.throttle import LoginThrottle

EXTENSION_KEY = "pqmon"


@dataclass(frozen=True)
class DashboardContext:
    settings: Settings
    registry: Registry
    store: InfluxStore
    throttle: LoginThrottle
    accounts: Accounts
    rollups: RollupCache[Any] = field(default_factory=RollupCache)


def install(server: Flask, ctx: DashboardContext) -> None:
    server.extensions[EXTENSION_KEY] = ctx


def get_context() -> DashboardContext:
    """The context of the app handling the current request."""
    ctx: DashboardContext = current_app.extensions[EXTENSION_KEY]
    return ctx

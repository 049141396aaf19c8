"""The read-only API under /api/v1 (token per user, the same authorization as the pages)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("pqmon_api", __name__, url_prefix="/api/v1")

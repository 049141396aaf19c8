"""Who may sign in and for how long: server-side sessions, API tokens and the audit log.

A browser holds only a random session id (in Flask's signed cookie); the session itself is a
row here. Logging out, changing a password or disabling a user deletes the rows, so a cookie
copied before that is worth nothing afterwards, on every dashboard process sharing the
registry. Only a hash of the id and of each API token is stored: a copy of the database does
not hand out sessions.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from core.errors import RegistryError
from core.registry import Base, Registry, User, UserRow

TOKEN_PREFIX = "pqm_"


class WebSessionRow(Base):
    __tablename__ = "web_session"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("app_user.name", ondelete="CASCADE"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str] = mapped_column(String(64), default="")


class ApiTokenRow(Base):
    __tablename__ = "api_token"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("app_user.name", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)


class AuditRow(Base):
    """One change made by a person: who, when, what, and the values before and after."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")


@dataclass(frozen=True)
class AuditEntry:
    at_ms: int
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


class Accounts:
    """Sessions, tokens and audit entries, in the registry's database."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._session = registry._session

    # -- browser sessions -------------------------------------------------------------------
    def start_session(
        self, user_name: str, lifetime_s: float, address: str = "", now_ms: int | None = None
    ) -> str:
        """A new session id for the browser; only its hash is kept."""
        now = _now_ms() if now_ms is None else now_ms
        raw = secrets.token_urlsafe(32)
        with self._session.begin() as s:
            s.execute(delete(WebSessionRow).where(WebSessionRow.expires_ms <= now))
            s.add(
                WebSessionRow(
                    id_hash=_hash(raw),
                    user_name=user_name,
                    created_ms=now,
                    expires_ms=now + int(lifetime_s * 1000),
                    address=address[:64],
                )
            )
        return raw

    def session_user(self, raw: str, now_ms: int | None = None) -> User | None:
        """The user of a live session, or None (unknown, expired, or the user is disabled)."""
        now = _now_ms() if now_ms is None else now_ms
        with self._session() as s:
            row = s.get(WebSessionRow, _hash(raw))
            if row is None or row.expires_ms <= now:
                return None
            name = row.user_name
        return self.registry.user(name)

    def end_session(self, raw: str) -> None:
        with self._session.begin() as s:
            s.execute(delete(WebSessionRow).where(WebSessionRow.id_hash == _hash(raw)))

    def end_user_sessions(self, user_name: str) -> int:
        """Every session of the user, on every process: after a password change or disabling."""
        with self._session.begin() as s:
            result = s.execute(delete(WebSessionRow).where(WebSessionRow.user_name == user_name))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- API tokens -------------------------------------------------------------------------
    def issue_token(self, user_name: str, label: str = "") -> str:
        """A new read-only API token of the user, shown once."""
        if self.registry.user(user_name) is None:
            from core.errors import RegistryError

            raise RegistryError(f"no user {user_name!r}; create it first with pqmon user add")
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._session.begin() as s:
            s.add(
                ApiTokenRow(id_hash=_hash(raw), user_name=user_name, label=label[:100], created_ms=_now_ms())
            )
        return raw

    def token_user(self, raw: str) -> User | None:
        if not raw.startswith(TOKEN_PREFIX):
            return None
        with self._session() as s:
            row = s.get(ApiTokenRow, _hash(raw))
            name = row.user_name if row is not None else None
        return self.registry.user(name) if name else None

    def revoke_tokens(self, user_name: str) -> int:
        with self._session.begin() as s:
            result = s.execute(delete(ApiTokenRow).where(ApiTokenRow.user_name == user_name))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- users: the changes that must end sessions ------------------------------------------
    def set_password(self, actor: str, user_name: str, password: str) -> None:
        """Change a password and end every session of that user."""
        self.registry.set_password(user_name, password)
        self.end_user_sessions(user_name)
        self.audit(actor, "user.password", user_name)

    def set_disabled(self, actor: str, user_name: str, disabled: bool) -> None:
        with self._session.begin() as s:
            s.execute(update(UserRow).where(UserRow.name == user_name).values(disabled=disabled))
        if disabled:
            self.end_user_sessions(user_name)
            self.revoke_tokens(user_name)
        self.audit(actor, "user.disable" if disabled else "user.enable", user_name)

    # -- audit ------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str = "", **detail: Any) -> None:
        with self._session.begin() as s:
            s.add(
                AuditRow(
                    at_ms=_now_ms(),
                    actor=actor,
                    action=action,
                    target=target[:200],
                    detail=json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True),
                )
            )

    def audit_log(self, limit: int = 500) -> list[AuditEntry]:
        with self._session() as s:
            rows = s.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)).all()
            return [
                AuditEntry(r.at_ms, r.actor, r.action, r.target, json.loads(r.detail or "{}")) for r in rows
            ]

    # -- misc ---------------------------------------------------------------------------------
    def session_count(self, user_name: str) -> int:
        with self._session() as s:
            return len(
                s.scalars(select(WebSessionRow.id_hash).where(WebSessionRow.user_name == user_name)).all()
            )

    # -- audited changes made from the admin page or the command line -------------------------
    def create_user(self, actor: str, name: str, role: str, password: str, sites: Iterable[str] = ()) -> User:
        """A new user; refuses a name in use (Registry.add_user would overwrite it)."""
        if any(u.name == name for u in self.registry.users()):
            raise RegistryError(f"a user named {name!r} exists already")
        user = self.registry.add_user(name, role, password, sites)
        self.audit(actor, "user.create", name, role=role, sites=sorted(user.sites))
        return user

    def change_user(self, actor: str, name: str, role: str, sites: Iterable[str]) -> User:
        """Change role and assignments (applied on the user's next request), with before and after."""
        before = next((u for u in self.registry.users() if u.name == name), None)
        if before is None:
            raise RegistryError(f"no user {name!r}")
        after = self.registry.set_user_sites(name, role, sites)
        self.audit(
            actor,
            "user.change",
            name,
            before={"role": before.role, "sites": sorted(before.sites)},
            after={"role": after.role, "sites": sorted(after.sites)},
        )
        return after

    def grant_token(self, actor: str, user_name: str, label: str = "") -> str:
        """issue_token, audited (the token itself is never logged)."""
        raw = self.issue_token(user_name, label)
        self.audit(actor, "user.token", user_name, label=label[:100])
        return raw

    def revoke_user_tokens(self, actor: str, user_name: str) -> int:
        count = self.revoke_tokens(user_name)
        self.audit(actor, "user.tokens_revoked", user_name, count=count)
        return count

    def token_counts(self) -> dict[str, int]:
        """User name -> number of live API tokens."""
        with self._session() as s:
            counts: dict[str, int] = {}
            for name in s.scalars(select(ApiTokenRow.user_name)):
                counts[name] = counts.get(name, 0) + 1
            return counts

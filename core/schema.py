"""The registry's schema version: Alembic migrations (core/migrations) run from code, under a lock.

Until release 0.1.0 every process ran ``create_all`` and then added, by hand, the nullable columns
a newer pqmon knew. That can neither change a column nor tell which schema a database has. Now
the schema has versions, Alembic revisions in ``core/migrations/versions`` (package data; no
alembic.ini: the configuration is made here), and the database says which one it is at in its
``alembic_version`` table.

- 0001 is exactly the schema release 0.1.0 created (7 tables), 0002 brings it to 0.2.0's models.
- ``pqmon db upgrade`` (:func:`upgrade`) is the explicit step for a deployment. ``Registry(url)``
  also calls :func:`ensure_head`: one query of ``alembic_version`` when the database is at
  :data:`HEAD` (the common case: every process, every test), an upgrade under the lock otherwise,
  so a new database or an old one left behind by a deployment still works.
- Registries made before migrations (0.1.0, and the development code after it: tables made by
  ``create_all``, columns added by hand, no ``alembic_version``) are recognised by their ``site``
  table: they are stamped at the baseline 0001 and upgraded from there. For that reason 0002 is
  written to be tolerant: it creates a table or an index only if it is missing and adds a column
  only if it is missing, so it brings 0.1.0 and every in-between registry to the same schema
  (every change since 0.1.0 was additive: new tables, new nullable columns, new indexes).
  Revisions after 0002 are ordinary strict ones: every database reaching them came through 0002.
- The lock: on PostgreSQL ``pg_advisory_lock(LOCK_KEY)`` on the connection that runs the
  migration, held until it ends (a session lock: it dies with the process); on SQLite an
  exclusive ``flock`` of ``<database file>-schema.lock`` beside the database (SQLite's own locks
  are POSIX locks on the database file, which a second descriptor of the same file would drop,
  hence a separate file). Whoever gets the lock reads the version again, so of two processes
  started together the second finds the work done.
- Unknown revision in the database (a newer pqmon upgraded it): an error that says so; pqmon
  never downgrades by itself.

Writing the next revision: change the models, then ``.venv/bin/python scripts/new_migration.py
"what changed"`` (autogenerate against every model, see :func:`autogenerate`), read and edit the
script (it must not import pqmon), and set :data:`HEAD` to its id. tests/integration/
test_migrations.py compares the migrated database with the models on SQLite and PostgreSQL.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from core.errors import RegistryError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import MetaData

log = logging.getLogger(__name__)

HEAD = "0002"  # the newest revision in core/migrations/versions (a test checks they agree)
BASELINE = "0001"  # release 0.1.0's schema: where a registry made before migrations starts
LEGACY_MARKER = "site"  # a table every registry has had since the first release
LOCK_KEY = 0x70716D6F6E5F7363  # pg_advisory_lock key, any fixed bigint: b"pqmon_sc"
MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class Status:
    """Where a database is: ``current`` None means no ``alembic_version`` table."""

    current: str | None
    head: str
    legacy: bool  # no alembic_version, but pqmon's tables: made before migrations
    known: bool  # current is one of this pqmon's revisions (or None)

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.at_head:
            return f"{self.current} (head)"
        if not self.known:
            return (
                f"{self.current}, a revision this pqmon does not know (its head is {self.head}):"
                " a newer pqmon upgraded the database; run that version or newer"
            )
        if self.legacy:
            return (
                f"none: a registry made before migrations (no alembic_version); 'pqmon db upgrade'"
                f" stamps it at {BASELINE} and upgrades it to {self.head}"
            )
        if self.current is None:
            return f"none: an empty database; 'pqmon db upgrade' creates the tables at {self.head}"
        return f"{self.current}, behind head {self.head}: run 'pqmon db upgrade'"


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: from ``before`` (None: a new database) to ``after``."""

    before: str | None
    after: str
    legacy: bool  # it was made before migrations and was stamped at BASELINE first

    @property
    def changed(self) -> bool:
        return self.legacy or self.before != self.after

    def describe(self) -> str:
        if not self.changed:
            return f"already at head {self.after}; nothing to do"
        start = (
            f"a registry made before migrations (stamped {BASELINE})"
            if self.legacy
            else "an empty database"
            if self.before is None
            else self.before
        )
        return f"upgraded from {start} to {self.after}" + (" (head)" if self.after == HEAD else "")


def read_revision(conn: Connection) -> str | None:
    """The database's revision: one query. None when it has no ``alembic_version`` table.

    Ends the connection's transaction, so Alembic may begin its own afterwards.
    """
    try:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        conn.rollback()
        if inspect(conn).has_table("alembic_version"):
            raise  # the table is there: this is another failure, not a new database
        conn.rollback()
        return None
    conn.rollback()
    if len(rows) > 1:
        raise RegistryError(
            f"the registry's alembic_version table holds {len(rows)} revisions ({', '.join(rows)});"
            " pqmon's migrations are linear: someone stamped it by hand, fix it to one row"
        )
    return rows[0] if rows else None


def status(engine: Engine) -> Status:
    _quiet_alembic()
    from alembic.script import ScriptDirectory

    with engine.connect() as conn:
        current = read_revision(conn)
        legacy = current is None and inspect(conn).has_table(LEGACY_MARKER)
        conn.rollback()
    script = ScriptDirectory.from_config(_config(None))
    known = current is None or current in {rev.revision for rev in script.walk_revisions()}
    head = script.get_current_head()
    assert head is not None
    return Status(current=current, head=head, legacy=legacy, known=known)


def ensure_head(engine: Engine) -> Upgrade | None:
    """Bring the database to :data:`HEAD` if it is behind (Registry() calls this).

    At head it costs one query and imports nothing; None then.
    """
    with engine.connect() as conn:
        current = read_revision(conn)
    if current == HEAD:
        return None
    done = upgrade(engine)
    if done.changed:
        log.info("registry schema %s", done.describe())
    return done


def upgrade(engine: Engine, to: str = "head") -> Upgrade:
    """Upgrade to head (or revision ``to``, for tests) under the lock.

    A no-op when another process got there first.
    """
    _quiet_alembic()
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    with _migration_lock(engine) as conn:
        before = read_revision(conn)
        legacy = before is None and inspect(conn).has_table(LEGACY_MARKER)
        conn.rollback()
        cfg = _config(conn)
        if before is not None:
            try:
                ScriptDirectory.from_config(cfg).get_revision(before)
            except CommandError:
                raise RegistryError(
                    f"the registry's schema is at revision {before!r}, which this pqmon does not know"
                    f" (its newest is {HEAD}): a newer pqmon upgraded it; run that version or newer"
                ) from None
        if legacy:
            log.info("registry made before migrations (no alembic_version): stamping it at %s", BASELINE)
            command.stamp(cfg, BASELINE)
            conn.commit()
        command.upgrade(cfg, to)
        conn.commit()
        after = read_revision(conn)
    assert after is not None
    return Upgrade(before=BASELINE if legacy else before, after=after, legacy=legacy)


def script_head() -> str:
    """The head revision as the scripts say (imports Alembic; :data:`HEAD` is the cheap twin)."""
    _quiet_alembic()
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert head is not None
    return head


def autogenerate(engine: Engine, message: str, rev_id: str, metadata: MetaData) -> str:
    """Write the next revision script: what ``metadata`` has that the database (at head) has not.

    ``metadata`` is every model's (pqmon.models.metadata()); passing it in keeps core from
    importing the parts. Returns the new script's path.
    """
    _quiet_alembic()
    from alembic import command

    with _migration_lock(engine) as conn:
        cfg = _config(conn)
        cfg.attributes["target_metadata"] = metadata
        script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        conn.rollback()
    assert script is not None and not isinstance(script, list)
    return str(script.path)


def _config(conn: Connection | None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.attributes["connection"] = conn
    return cfg


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection held under the schema lock (see the module docstring) until the block ends."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            conn.commit()  # a session lock: it outlives the transaction
            try:
                yield conn
            finally:
                try:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                    conn.commit()
                except DBAPIError:
                    conn.invalidate()  # closing the session releases the lock
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        with engine.connect() as conn:  # nothing another process could share
            yield conn
        return
    with open(f"{database}-schema.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        migrating = _sqlite_transactional(engine)
        try:
            with migrating.connect() as conn:
                yield conn
        finally:
            migrating.dispose()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sqlite_transactional(engine: Engine) -> Engine:
    """An engine on the same SQLite file whose transactions are real, DDL included.

    Python's sqlite3 runs DDL outside any transaction (a commit, so a disk sync, per statement:
    0.3 s for the 40-odd of a new registry) and begins one only before DML. Here it begins none
    itself, and every SQLAlchemy transaction starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's
    recipe for pysqlite), so a migration is one transaction: all of it or nothing, one sync,
    and no other writer in between.
    """
    migrating = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(migrating, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA busy_timeout=5000")

    @event.listens_for(migrating, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return migrating


def _quiet_alembic() -> None:
    """Alembic says "Context impl SQLiteImpl" and "setup plugin" at INFO (the latter on import, so
    this runs before it); pqmon logs the outcome itself. A level set by someone else stays."""
    logger = logging.getLogger("alembic")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)

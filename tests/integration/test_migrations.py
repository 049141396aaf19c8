"""The registry's versioned schema (core.schema, core/migrations, ``pqmon db``), on SQLite and PostgreSQL.

- ``pqmon db upgrade`` makes a new database's schema, and a second run changes nothing;
- release 0.1.0's own registry (tests/fixtures/registry-0.1.0.db, made as its README says)
  upgrades with every row kept, and today's Registry API works on it;
- a registry made before migrations (create_all, no alembic_version), even one lacking columns
  and indexes added later, is stamped and upgraded;
- after any of these the database is exactly what the models say (compare_metadata): the check
  that keeps the migrations in step with the models;
- two upgrades started together are serialised by the lock;
- at head, Registry() costs one query.

Cost: about 20 s with both databases, most of it the 21 ``pqmon`` processes (1 s or so each to start).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, event, insert, inspect, select, text

from core import schema
from core.errors import RegistryError
from core.registry import Registry, open_engine
from core.servers import wait_until
from pqmon import models
from tests.conftest import BOTH_REGISTRIES

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "registry-0.1.0.db"
pytestmark = pytest.mark.integration


def pqmon_db(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pqmon db ...`` as an operator runs it: its own process, only the registry URL set."""
    return subprocess.run([sys.executable, "-m", "pqmon", "db", *args], env=_env(url, tmp_path), **_run)


_run: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 120, "check": False}


def _env(url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
    env.update({"PQMON_REGISTRY_URL": url, "PQMON_DATA_DIR": str(tmp_path / "var")})
    return env


@pytest.fixture
def engine(registry_url: str) -> Iterator[Engine]:
    eng = open_engine(registry_url)
    yield eng
    eng.dispose()


def differences(engine: Engine) -> list[Any]:
    """What the database lacks or has beyond every model (alembic's autogenerate comparison)."""
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), models.metadata()))


def snapshot(engine: Engine) -> dict[str, Any]:
    """Tables, columns, indexes and constraints as the database reports them, and the revision."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = (
            [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
            sorted(
                (ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in insp.get_indexes(table)
            ),
            sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            sorted(
                (tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(table)
            ),
        )
    with engine.connect() as conn:
        out["alembic_version rows"] = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    return out


# -- a new database -------------------------------------------------------------------------------
@BOTH_REGISTRIES
def test_db_upgrade_twice_on_a_new_database(registry_url: str, tmp_path: Path, engine: Engine):
    first = pqmon_db(registry_url, tmp_path, "upgrade")
    assert first.returncode == 0, first.stderr
    assert "upgraded from an empty database to 0002 (head)" in first.stdout
    before = snapshot(engine)
    second = pqmon_db(registry_url, tmp_path, "upgrade")
    assert second.returncode == 0, second.stderr
    assert "already at head 0002" in second.stdout
    assert snapshot(engine) == before
    assert before["alembic_version rows"] == [("0002",)]
    assert {"site", "alert", "report_issue", "web_session", "dirty_site"} <= set(before)
    current = pqmon_db(registry_url, tmp_path, "current")
    assert (current.returncode, current.stdout.strip()) == (0, "registry schema 0002 (head)")
    assert differences(engine) == []


@BOTH_REGISTRIES
def test_db_current_says_what_to_do_when_behind(registry_url: str, tmp_path: Path, engine: Engine):
    empty = pqmon_db(registry_url, tmp_path, "current")
    assert empty.returncode == 1 and "an empty database; 'pqmon db upgrade' creates" in empty.stdout
    schema.upgrade(engine, to="0001")
    behind = pqmon_db(registry_url, tmp_path, "current")
    assert behind.returncode == 1
    assert "0001, behind head 0002: run 'pqmon db upgrade'" in behind.stdout


# -- release 0.1.0's registry ---------------------------------------------------------------------
@pytest.fixture
def registry_010(registry_url: str, tmp_path: Path) -> str:
    """The 0.1.0 fixture's registry at ``registry_url``: a copy of the file on SQLite; on PostgreSQL
    revision 0001 (0.1.0's create_all, table for table) without alembic_version, holding every
    row of the fixture, as 0.1.0 left a PostgreSQL registry."""
    if registry_url.startswith("sqlite"):
        path = Path(registry_url.removeprefix("sqlite:///"))
        shutil.copy(FIXTURE, path)
        return registry_url
    eng = open_engine(registry_url)
    schema.upgrade(eng, to="0001")
    copy = shutil.copy(FIXTURE, tmp_path / "source.db")  # reading it makes -wal and -shm files beside it
    source = create_engine(f"sqlite:///{copy}")
    meta = MetaData()
    meta.reflect(source)
    with source.connect() as src, eng.begin() as dst:
        dst.execute(text("DROP TABLE alembic_version"))
        for table in meta.sorted_tables:
            rows = [dict(r._mapping) for r in src.execute(select(table))]
            dst.execute(insert(table), rows)
        for table in ("meter", "planned_outage"):  # ids were given: move the sequences past them
            dst.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'), (SELECT max(pk) FROM {table}))")
            )
    source.dispose()
    eng.dispose()
    return registry_url


@BOTH_REGISTRIES
def test_release_0_1_0_registry_upgrades_with_its_rows(registry_010: str, tmp_path: Path):
    url = registry_010
    said = pqmon_db(url, tmp_path, "current")
    assert said.returncode == 1 and "a registry made before migrations" in said.stdout
    done = pqmon_db(url, tmp_path, "upgrade")
    assert done.returncode == 0, done.stderr
    assert "upgraded from a registry made before migrations (stamped 0001) to 0002 (head)" in done.stdout

    registry = Registry(url)
    try:
        assert differences(registry.engine) == []
        sites = {s.id: s for s in registry.sites()}
        assert sorted(sites) == ["ACME", "BAKERY", "CHIPS", "F10"]
        acme = sites["ACME"]
        assert (acme.kind, acme.name, acme.voltage_class_kv, acme.phases) == (
            "account",
            "Acme Steel Works",
            10.0,
            3,
        )
        assert (acme.upper_pct, acme.lower_pct, acme.profile, acme.feeder_id, acme.manager) == (
            7.0,
            7.0,
            "gb",
            "F10",
            "mgr1",
        )
        assert [(m.meter_id, m.nominal_v) for m in acme.meters] == [("ACME-M1", 5773.5), ("ACME-M2", 5773.5)]
        assert acme.commissioned is None  # a column 0.2.0 added: empty on old rows
        bakery = sites["BAKERY"]
        assert (bakery.voltage_class_kv, bakery.phases, bakery.upper_pct, bakery.profile) == (
            0.4,
            1,
            None,
            "en50160",
        )
        assert [(m.meter_id, m.nominal_v) for m in bakery.meters] == [("BAKERY-M1", 230.0)]
        assert (sites["CHIPS"].voltage_class_kv, sites["CHIPS"].feeder_id, sites["CHIPS"].manager) == (
            35.0,
            None,
            "mgr2",
        )
        assert sites["F10"].kind == "feeder" and len(sites["F10"].meters) == 2
        assert len(registry.meter_index()) == 6

        mgr = registry.authenticate("mgr1", "manager-pass-1")  # 0.1.0's password hash still checks
        assert mgr is not None and (mgr.role, mgr.sites, mgr.lang, mgr.disabled) == (
            "manager",
            frozenset({"ACME", "BAKERY"}),
            None,
            False,
        )
        assert registry.authenticate("mgr1", "wrong-password") is None
        assert registry.user("acme").sites == frozenset({"ACME"})
        assert registry.user("admin").role == "admin"

        window = (datetime(2026, 11, 20, 1, 0), datetime(2026, 11, 20, 9, 30))
        assert registry.planned_outages("ACME") == [window]
        assert registry.planned_outages("CHIPS") == [(datetime(2026, 11, 21, 14), datetime(2026, 11, 21, 18))]
        assert registry.all_planned_outages().keys() == {"F10", "ACME", "BAKERY", "CHIPS"}
        assert registry.dirty_days() == {
            "ACME": {date(2026, 11, 18), date(2026, 11, 20)},
            "BAKERY": {date(2026, 11, 20)},
            "F10": {date(2026, 11, 20)},
            "CHIPS": {date(2026, 11, 21), date(2026, 11, 22)},
        }
        assert registry.get_state("worker.last_pass_ms") == "1763856000000"

        # Today's API on the upgraded registry: new users, marks, outages, columns 0.2.0 added.
        registry.add_user("op1", "operator", "operator-pass-1")
        assert registry.authenticate("op1", "operator-pass-1").role == "operator"
        registry.set_user_lang("mgr1", "en")
        assert registry.user("mgr1").lang == "en"
        registry.mark_dirty([("CHIPS", date(2026, 11, 25))])
        assert date(2026, 11, 25) in registry.dirty_days()["CHIPS"]
        registry.add_planned_outage("BAKERY", datetime(2026, 12, 1, 2), datetime(2026, 12, 1, 4), "new one")
        assert len(registry.planned_outages("BAKERY")) == 2
    finally:
        registry.close()


# -- registries made before migrations by the code after 0.1.0 --------------------------------------
@BOTH_REGISTRIES
def test_pre_migration_registry_is_stamped_and_upgraded(registry_url: str, engine: Engine):
    """Made as Registry() made them until now: create_all of every model, no alembic_version.
    And made by an older in-between version: a column and an index that came later are missing."""
    models.metadata().create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_outbox_due"))
        conn.execute(text("ALTER TABLE alert_incident DROP COLUMN detail"))
        conn.execute(text("ALTER TABLE site DROP COLUMN commissioned"))
        conn.execute(
            text(
                "INSERT INTO site (id, kind, name, voltage_class_kv, phases, profile)"
                " VALUES ('S1', 'account', 'Works', 10, 3, 'gb')"
            )
        )
    assert len(differences(engine)) == 3
    assert not inspect(engine).has_table("alembic_version")

    registry = Registry(registry_url)  # what every service does on start
    try:
        assert differences(engine) == []
        assert schema.status(engine).current == "0002"
        assert [(s.id, s.name, s.commissioned) for s in registry.sites()] == [("S1", "Works", None)]
    finally:
        registry.close()


@BOTH_REGISTRIES
def test_models_and_migrations_agree(engine: Engine):
    """A new database migrated to head is exactly the models: a model changed without a
    revision (or a revision that differs from its model) fails here. See core/schema.py."""
    schema.upgrade(engine)
    assert differences(engine) == []


# -- the lock ---------------------------------------------------------------------------------------
def waiting_for_lock(engine: Engine) -> int:
    """How many processes wait for the schema lock now."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
    inode = os.stat(f"{engine.url.database}-schema.lock").st_ino
    with open("/proc/locks") as fh:  # a blocked flock is listed with "->"
        return sum(1 for line in fh if "->" in line and line.split()[6].endswith(f":{inode}"))


@BOTH_REGISTRIES
def test_two_upgrades_started_together_take_turns(registry_url: str, tmp_path: Path, engine: Engine):
    """Both start while the lock is held (as by a third upgrade), so both are surely contending
    when it is released: one upgrades, the other then finds the work done."""
    cmd = [sys.executable, "-m", "pqmon", "db", "upgrade"]
    with schema._migration_lock(engine):
        procs = [
            subprocess.Popen(
                cmd,
                env=_env(registry_url, tmp_path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        wait_until(lambda: waiting_for_lock(engine) == 2, 60, "both upgrades to wait for the lock")
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    said = sorted(out.strip() for out, _ in outs)
    assert said == [
        "registry schema already at head 0002; nothing to do",
        "registry schema upgraded from an empty database to 0002 (head)",
    ]
    assert snapshot(engine)["alembic_version rows"] == [("0002",)]
    assert differences(engine) == []


# -- Registry() ---------------------------------------------------------------------------------------
@BOTH_REGISTRIES
def test_registry_at_head_costs_one_query(registry_url: str):
    Registry(registry_url).close()  # makes the schema
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        Registry(registry_url).close()
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert statements == ["SELECT version_num FROM alembic_version"]


@BOTH_REGISTRIES
def test_a_newer_schema_is_refused_with_what_to_do(registry_url: str, tmp_path: Path, engine: Engine):
    schema.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(RegistryError, match="revision '0099', which this pqmon does not know.*newer pqmon"):
        Registry(registry_url)
    said = pqmon_db(registry_url, tmp_path, "current")
    assert said.returncode == 1 and "0099, a revision this pqmon does not know" in said.stdout


def test_unreachable_database_is_a_clear_error(tmp_path: Path):
    url = "postgresql://nobody@127.0.0.1:9/none"  # port 9 (discard): nothing listens
    with pytest.raises(
        RegistryError, match="(?s)cannot open the registry database .*check PQMON_REGISTRY_URL"
    ):
        Registry(url)
    said = pqmon_db(url, tmp_path, "upgrade")
    assert said.returncode == 2 and "cannot open the registry database" in said.stderr


# -- the revision scripts -------------------------------------------------------------------------
def test_head_constant_is_the_scripts_head():
    """core.schema.HEAD spares Registry() reading the scripts; it must name the newest one."""
    assert schema.HEAD == schema.script_head()


def test_revision_scripts_import_only_alembic_and_sqlalchemy():
    """A revision means what it meant when written: it may not lean on the models (or any pqmon module)."""
    scripts = sorted((ROOT / "core" / "migrations").rglob("*.py"))
    assert len(scripts) >= 3
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert re.match(r"(alembic|sqlalchemy|typing|__future__)(\.|$)", name), (
                    f"{path.name} imports {name}"
                )

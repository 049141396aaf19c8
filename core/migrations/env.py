"""Alembic's entry point for the registry's migrations, run only from core.schema.

core.schema hands over an open connection (which already holds the migration lock) in
``config.attributes["connection"]``; there is no alembic.ini and no URL here. Upgrading needs
no model: the revision scripts say every change themselves. Only autogenerate (a developer
writing the next revision, see core/schema.py) compares against the models, and then its
caller passes the full metadata in ``config.attributes["target_metadata"]``, so nothing here
imports analysis or reports and core stays below them.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the registry's migrations run from code: use 'pqmon db upgrade' (core.schema),"
        " not the alembic command"
    )

context.configure(
    connection=connection,
    target_metadata=config.attributes.get("target_metadata"),
    # SQLite alters a table by copying it; a revision that changes a column needs batch mode.
    render_as_batch=True,
    compare_type=True,
    # One transaction for the whole upgrade. PostgreSQL has transactional DDL anyway; on SQLite
    # core.schema hands over a connection whose transactions begin for real (BEGIN IMMEDIATE).
    transactional_ddl=True,
)

with context.begin_transaction():
    context.run_migrations()

"""Write the next registry migration: what the models have that the migrations do not yet make.

    .venv/bin/python scripts/new_migration.py "what changed"

It upgrades a scratch SQLite database to the current head, compares it with every model
(pqmon.models) and writes core/migrations/versions/NNNN_<slug>.py. Read and edit the script
(autogenerate misses renames and server defaults; the script must not import pqmon), then set
core.schema.HEAD to the new id. tests/integration/test_migrations.py checks the result on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine

from core import schema
from pqmon import models


def main(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        schema.upgrade(engine)
        rev_id = f"{int(schema.script_head()) + 1:04d}"
        path = schema.autogenerate(engine, message, rev_id, models.metadata())
        engine.dispose()
    print(f"wrote {path}; review it, then set HEAD = {rev_id!r} in core/schema.py")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

"""Every table of the registry database, for the tools that compare models with migrations.

The tables are declared where they are used (core.registry, core.accounts, analysis.alerts,
reports.archive), all on ``core.registry.Base``. Core must not import the parts above it, so
this module, above them all, is the one place that imports every model module: autogenerate
(scripts/new_migration.py) and the migration tests take :func:`metadata` from here. Running the
migrations needs none of it.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData

MODEL_MODULES = (
    "core.registry",
    "core.accounts",
    "analysis.alerts.state",
    "analysis.alerts.subscriptions",
    "reports.archive",
)


def metadata() -> MetaData:
    """``core.registry.Base.metadata`` with every model module imported, so every table is on it."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    from core.registry import Base

    return Base.metadata

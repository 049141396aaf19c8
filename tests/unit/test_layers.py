"""The parts' layering, checked on the source: core imports no part above it, and no part imports pqmon.

    pqmon (command line, launcher, pqmon.models)
      collector  analysis  reports  dashboard  simulator
        core

Core is what every part shares (settings, registry, store, migrations); if it imported a part,
every process would load that part and its dependencies, and the registry's schema would
depend on modules above it (that is why the migrations are self-contained revision scripts).
pqmon is the top: a part that imported it would import the whole command line. Every import
statement counts, also one inside a function or under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("collector", "analysis", "reports", "dashboard", "simulator")


def imported(path: Path, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``; relative imports resolved against ``package``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                found.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def offences(top: str, forbidden: tuple[str, ...]) -> list[str]:
    files = sorted((ROOT / top).rglob("*.py"))
    assert files, f"no Python files under {top}/"
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imported(path, path.relative_to(ROOT).parts[:-1])
        if module.split(".")[0] in forbidden
    ]


def test_core_imports_no_part():
    assert offences("core", (*PARTS, "pqmon")) == []


@pytest.mark.parametrize("part", PARTS)
def test_no_part_imports_pqmon(part: str):
    assert offences(part, ("pqmon",)) == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path):
    """The walk finds what a module-level scan would miss (a lazy import in a function)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    import analysis.worker\n    from reports import archive\n    from ..analysis import x\n",
        encoding="utf-8",
    )
    found = imported(probe, ("core", "sub"))
    assert found == [(2, "analysis.worker"), (3, "reports"), (4, "core.analysis")]

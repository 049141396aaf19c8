"""The documentation cannot drift from the code, link to nothing, or point outside the repository.

- docs/cli.md and docs/settings.md are exactly what scripts/gen_docs.py writes from the parser and
  from SETTINGS now;
- every relative link in README.md, README.zh-CN.md and docs/*.md reaches a file that exists;
- no tracked text file refers to documents that are not in the repository;
- each Chinese page has the same section structure as its English original;
- every worked example names the test that carries its numbers, and every test the docs name exists.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ".venv/bin/python scripts/gen_docs.py"
# (English original, Simplified Chinese translation) kept in step.
PAIRS = [("README.md", "README.zh-CN.md"), ("docs/operations.md", "docs/operations.zh-CN.md")]


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("rel", ["docs/cli.md", "docs/settings.md"])
def test_generated_references_are_current(rel):
    expected = _gen_docs().OUTPUTS[rel]()
    path = ROOT / rel
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    assert committed == expected, (
        f"{rel} is not what the code says now (a command, option or setting changed): "
        f"run `{REGENERATE}` and commit {rel}"
    )


def _markdown_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "README.zh-CN.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [f for f in files if f.exists()]


FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def _prose_lines(text: str):
    """(line number, line) outside fenced code blocks, with inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub("", line)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_markdown_files_exist():
    names = {str(p.relative_to(ROOT)) for p in _markdown_files()}
    for pair in PAIRS:
        for rel in pair:
            assert rel in names, f"{rel} is missing"


def test_the_readme_links_every_page_of_the_documentation():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {t.partition("#")[0] for _, line in _prose_lines(readme) for t in LINK.findall(line)}
    pages = [f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md"))] + ["README.zh-CN.md"]
    missing = [page for page in pages if page not in targets]
    assert not missing, f"link these from README.md's Documentation section: {missing}"


def test_every_relative_link_points_at_a_file_that_exists():
    broken = []
    for path in _markdown_files():
        # Headings inside code are not anchors, and the raw text keeps inline code for the slugs.
        raw = path.read_text(encoding="utf-8")
        for number, line in _prose_lines(raw):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                    continue
                file_part, _, fragment = target.partition("#")
                where = path if not file_part else (path.parent / file_part).resolve()
                label = f"{path.relative_to(ROOT)}:{number}: {target}"
                if not where.exists():
                    broken.append(f"{label} (no such file)")
                elif fragment and where.suffix == ".md" and fragment not in _anchors(where):
                    broken.append(f"{label} (no heading with that anchor)")
                elif ROOT not in where.parents and where != ROOT:
                    broken.append(f"{label} (outside the repository)")
    assert not broken, "broken links:\n" + "\n".join(broken)


# Built from parts so that this file does not match itself.
FORBIDDEN = ["../" + "shared", "DESIGN" + " §"]


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git work tree")
    done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode(
        "utf-8", "surrogateescape"
    )
    return [name for name in done.split("\0") if name]


def test_no_tracked_file_refers_outside_the_repository():
    found = []
    for rel in _tracked_files():
        path = ROOT / rel
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            for needle in FORBIDDEN:
                if needle in line:
                    found.append(f"{rel}:{number}: {line.strip()[:120]}")
    assert not found, (
        "these lines refer to documents outside the repository; say it here or drop the reference:\n"
        + "\n".join(found)
    )


def _structure(path: Path) -> list[tuple[int, str, int, int]]:
    """Per section (the text before the first heading is level 0): heading level, the heading's
    text, fenced code blocks and table rows in it."""
    sections: list[list] = [[0, "(before the first heading)", 0, 0]]
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            if not fenced:
                sections[-1][2] += 1
            fenced = not fenced
            continue
        if fenced:
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            sections.append([len(heading.group(1)), heading.group(2).strip(), 0, 0])
        elif line.lstrip().startswith("|"):
            sections[-1][3] += 1
    return [tuple(s) for s in sections]  # type: ignore[misc]


@pytest.mark.parametrize(("english", "chinese"), PAIRS)
def test_translations_keep_the_structure_of_their_original(english, chinese):
    en, zh = _structure(ROOT / english), _structure(ROOT / chinese)
    en_shape = [(level, code, rows) for level, _, code, rows in en]
    zh_shape = [(level, code, rows) for level, _, code, rows in zh]
    if en_shape == zh_shape:
        return
    lines = [f"{chinese} is out of step with {english} (heading level, code blocks, table rows):"]
    for i in range(max(len(en), len(zh))):
        a = en[i] if i < len(en) else None
        b = zh[i] if i < len(zh) else None
        same = a is not None and b is not None and a[0::2] == b[0::2] and a[3] == b[3]
        if not same:
            lines.append(f"  section {i}: {english} {a}  vs  {chinese} {b}")
    lines.append(f"update {chinese} to follow {english}")
    raise AssertionError("\n".join(lines))


def _test_functions() -> dict[str, set[str]]:
    """Every test function in tests/, by file path relative to the root."""
    import ast

    found: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        }
        found[str(path.relative_to(ROOT))] = names
    return found


def _worked_examples() -> list[tuple[str, str]]:
    """(page, text) of each worked example: from "Worked example" to the next one or heading."""
    blocks = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name.endswith(".zh-CN.md"):
            continue
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"Worked examples?\b", text):
            rest = text[m.start() :]
            ends = [i for i in (rest.find("\n#"), rest.find("Worked example", 1)) if i > 0]
            blocks.append((page.name, rest[: min(ends, default=len(rest))]))
    return blocks


def test_every_worked_example_in_the_docs_is_a_test_that_exists():
    """A worked example names the unit test that carries its numbers (pure, no servers), and every
    test it names exists: an example whose test was renamed or removed would be checked by nothing."""
    tests = _test_functions()
    every = set().union(*tests.values())
    examples = _worked_examples()
    assert len(examples) >= 9  # the definitions page has nine; a parser that finds none proves nothing
    unit = set().union(*(names for path, names in tests.items() if path.startswith("tests/unit/")))
    for page, block in examples:
        named = set(re.findall(r"\b(test_\w+)\b(?!\.py)", block))
        assert named & unit, f"{page}: a worked example names no unit test: {block[:160]!r}"
        missing = named - every
        assert not missing, f"{page}: worked example names tests that do not exist: {sorted(missing)}"


def test_every_test_the_docs_name_exists():
    tests = _test_functions()
    every = set().union(*tests.values())
    for page in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for path, name in re.findall(r"(tests/[\w/]+\.py)(?:::(test_\w+))?", text):
            assert path in tests or (ROOT / path).exists(), f"{page.name}: {path} does not exist"
            if name:
                assert name in tests.get(path, set()), f"{page.name}: {path}::{name} does not exist"
        for name in re.findall(r"`(test_\w+)`", text):
            assert name in every, f"{page.name}: test {name} does not exist"

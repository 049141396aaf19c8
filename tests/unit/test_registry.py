"""Registry CSV import (docs/cli.md) and the authorization rule (README: security),
on SQLite and on PostgreSQL."""

from pathlib import Path

import pytest

from core.errors import RegistryError
from core.registry import CSV_COLUMNS, Registry
from tests.conftest import BOTH_REGISTRIES

HEADER = ",".join(CSV_COLUMNS)
pytestmark = BOTH_REGISTRIES


@pytest.fixture
def registry(registry_url: str) -> Registry:
    reg = Registry(registry_url)
    yield reg
    reg.close()


def write(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "reg.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_import_then_update(registry: Registry, tmp_path: Path):
    path = write(
        tmp_path,
        "A001,account,钢铁厂,10,3,A001-M1,57.735,,,gb,F1,mgr1",
        "A001,account,钢铁厂,10,3,A001-M2,57.735,,,gb,F1,mgr1",
        "F1,feeder,Feeder 1,10,3,F1-M1,57.735,,,gb,,",
    )
    result = registry.import_csv(path)
    assert (result.sites_added, result.meters_added) == (2, 3)
    again = registry.import_csv(path)
    assert (again.sites_added, again.meters_added, again.meters_updated) == (0, 0, 3)
    site = registry.site("A001")
    assert site.name == "钢铁厂" and len(site.meters) == 2 and site.side == "customer"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("A 1,account,x,10,3,M1,57.7,,,gb,,", "site_id"),
        ("A1,shop,x,10,3,M1,57.7,,,gb,,", "site_kind"),
        ("A1,account,x,10,2,M1,57.7,,,gb,,", "phases"),
        ("A1,account,x,110,3,M1,63.5,7,5,gb,,", "10 %"),
        ("A1,account,x,10,3,M1,57.7,,,iec,,", "profile"),
    ],
)
def test_bad_rows_name_the_line(registry: Registry, tmp_path: Path, row: str, message: str):
    with pytest.raises(RegistryError, match=rf"line 2: .*{message}"):
        registry.import_csv(write(tmp_path, row))
    assert registry.sites() == []  # all or nothing


def test_visibility_by_role(registry: Registry, tmp_path: Path):
    registry.import_csv(
        write(
            tmp_path,
            "A001,account,a,10,3,A001-M1,57.7,,,gb,,mgr1",
            "A002,account,b,10,3,A002-M1,57.7,,,gb,,mgr2",
            "F1,feeder,f,10,3,F1-M1,57.7,,,gb,,",
        )
    )
    cust = registry.add_user("cust1", "customer", "s3cret-pass", ["A002"])
    mgr = registry.add_user("mgr1", "manager", "s3cret-pass")
    op = registry.add_user("op", "operator", "s3cret-pass")
    assert registry.visible_site_ids(cust) == ["A002"]
    # Created after the import: the CSV's free-text manager column hands it nothing.
    assert registry.visible_site_ids(mgr) == []
    result = registry.import_csv(write(tmp_path, "A001,account,a,10,3,A001-M1,57.7,,,gb,,mgr1"))
    assert result.assignments_added == 1 and result.unknown_managers == ()
    mgr = registry.user("mgr1")
    assert mgr is not None and registry.visible_site_ids(mgr) == ["A001"]
    result = registry.import_csv(write(tmp_path, "A002,account,b,10,3,A002-M1,57.7,,,gb,,mgr2"))
    assert result.unknown_managers == ("mgr2",)
    assert registry.visible_site_ids(registry.add_user("mgr2", "manager", "s3cret-pass")) == []
    assert registry.visible_site_ids(op) == ["A001", "A002"]
    assert registry.authenticate("cust1", "s3cret-pass") == cust
    assert registry.authenticate("cust1", "wrong-pass") is None
    assert registry.authenticate("nobody", "s3cret-pass") is None


def test_password_is_hashed_and_customer_needs_sites(registry: Registry, tmp_path: Path):
    registry.import_csv(write(tmp_path, "A001,account,a,10,3,A001-M1,57.7,,,gb,,"))
    with pytest.raises(RegistryError, match="--site"):
        registry.add_user("c", "customer", "long-enough")
    with pytest.raises(RegistryError, match="8 characters"):
        registry.add_user("c", "customer", "short", ["A001"])
    registry.add_user("c", "customer", "long-enough", ["A001"])
    with registry.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM app_user").scalar_one()
    assert "long-enough" not in stored and stored.startswith(("scrypt:", "pbkdf2:"))


def test_the_sites_list_follows_changes_made_by_another_process(tmp_path: Path, registry_url: str):
    mine, theirs = Registry(registry_url), Registry(registry_url)
    try:
        theirs.import_csv(write(tmp_path, "A001,account,a,10,3,A001-M1,57.7,,,gb,,"))
        assert [s.name for s in mine.sites()] == ["a"]  # read, and kept
        theirs.import_csv(write(tmp_path, "A001,account,renamed,10,3,A001-M1,57.7,,,gb,,"))
        assert [s.name for s in mine.sites()] == ["renamed"]  # the version stamp changed
        assert [s.id for s in mine.sites("feeder")] == []
    finally:
        mine.close()
        theirs.close()

"""Report downloads by URL: a user gets their own accounts' reports, and for anyone else's the
same 404 as for an account that does not exist; the month's zip holds only their own."""

from __future__ import annotations

import io
import subprocess
import zipfile

import pytest

from tests.browser.support import ACCOUNTS, PASSWORD, WAIT_S, Dashboard, requests_login

pytestmark = pytest.mark.integration

OWN, OTHER = "A001", "A002"


def text_of(pdf: bytes) -> str:
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


@pytest.mark.parametrize("user", ["custA", "mgrA"])
def test_own_reports_download_and_others_do_not(site: Dashboard, user: str) -> None:
    http, resp = requests_login(site.url, user, PASSWORD)
    assert resp.status_code == 302
    month = f"{site.data_day:%Y-%m}"

    mine = http.get(f"{site.url}/reports/{OWN}/{month}/v1.en.pdf", timeout=WAIT_S)
    assert mine.status_code == 200 and mine.headers["Content-Type"] == "application/pdf"
    assert ACCOUNTS[OWN][0] in text_of(mine.content)
    zh = http.get(f"{site.url}/reports/{OWN}/{month}/current.zh-CN.pdf", timeout=WAIT_S)
    assert zh.status_code == 200 and "供电质量月度报告" in text_of(zh.content)
    csv = http.get(f"{site.url}/reports/{OWN}/{month}/v1.csv", timeout=WAIT_S)
    assert csv.status_code == 200 and csv.text.lstrip("\ufeff").startswith("figure,value")

    unknown = http.get(f"{site.url}/reports/ZZ99/{month}/v1.en.pdf", timeout=WAIT_S)
    for path in ("v1.en.pdf", "v1.csv", "current.en.pdf", "current.zh-CN.pdf", "v2.en.pdf"):
        theirs = http.get(f"{site.url}/reports/{OTHER}/{month}/{path}", timeout=WAIT_S)
        assert theirs.status_code == 404, path
        assert theirs.text == unknown.text  # no way to tell "not yours" from "no such account"

    zipped = http.get(f"{site.url}/reports/month/{month}.zip?lang=en", timeout=WAIT_S)
    assert zipped.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    assert names == [f"PQ-{month.replace('-', '')}-{OWN}-v1.en.pdf"]


def test_staff_get_every_account_in_the_zip(site: Dashboard) -> None:
    http, _ = requests_login(site.url, "oper1", PASSWORD)
    month = f"{site.data_day:%Y-%m}"
    zipped = http.get(f"{site.url}/reports/month/{month}.zip", timeout=WAIT_S)
    assert zipped.status_code == 200
    names = sorted(zipfile.ZipFile(io.BytesIO(zipped.content)).namelist())
    assert names == sorted(f"PQ-{month.replace('-', '')}-{s}-v1.en.pdf" for s in ACCOUNTS)

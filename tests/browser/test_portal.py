"""The customer's portal in a real browser: a customer signs in choosing Chinese, lands on
their account in plain words, and downloads this month's report and last month's issued
version 1 by clicking the links; the PDFs are read back with pdftotext. Another account's
download URL typed into the address bar answers 404 and saves nothing.

Artifacts (PQMON_TEST_ARTIFACTS, default tests/browser/artifacts/): the portal's screenshot
and the first page of each downloaded PDF as PNG.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from reports.archive import Issue, IssueContext, issue, issue_of
from reports.monthly import month_of, previous_month
from tests.browser.support import (
    ALL_ACCOUNTS,
    PASSWORD,
    SAVED,
    Dashboard,
    artifacts_dir,
    element_text,
    login,
    screenshot,
    wait,
    wait_text,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SITE = "A001"
CUSTOMER = "cust1"  # a customer of A001 only
NAME = {site: figures[0] for site, figures in ALL_ACCOUNTS.items()}
VQR = ALL_ACCOUNTS[SITE][2]
LANG = "zh-CN"
PORTAL_TITLE = "您的供电质量"  # "Your supply quality"
REPORT_TITLE = "供电质量月度报告"  # "Monthly supply-quality report"
THIS_MONTH, YOUR_REPORTS = "本月", "您的报告"  # the card's headings "This month", "Your reports"


@pytest.fixture(scope="module")
def last_month_v1(dashboard: Dashboard) -> Issue:
    """Version 1 of A001's report of last month, as the archiver issues it. The fixture's
    roll-ups already cover every day of last month (and its outage on the 10th); issuing only
    writes the archive, no figure the other browser tests look for."""
    assert dashboard.now_day is not None
    month = previous_month(dashboard.now_day)
    made = issue_of(dashboard.registry, SITE, month, 1) or issue(
        IssueContext(dashboard.settings, dashboard.store, dashboard.registry), SITE, month, dashboard.now_day
    )
    assert made is not None and made.version == 1, f"no version 1 of {SITE} {month} issued"
    return made


def allow_downloads(driver: webdriver.Chrome, folder: Path) -> None:
    """Let headless Chromium save downloads into ``folder`` (it refuses them by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(folder), "eventsEnabled": True},
    )


def wait_download(driver: webdriver.Chrome, folder: Path, what: str) -> Path:
    """The one file saved into ``folder``, once complete (no .crdownload left)."""

    def done() -> bool:
        names = [p.name for p in folder.iterdir()]
        return (
            len(names) == 1
            and not names[0].endswith(".crdownload")
            and (folder / names[0]).stat().st_size > 0
        )

    wait_until(driver, f"the download of {what} in {folder}", done)
    return next(folder.iterdir())


def pdf_text(path: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def first_page_png(pdf: Path, name: str) -> Path:
    prefix = artifacts_dir() / name
    subprocess.run(
        ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(prefix)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    png = prefix.with_suffix(".png")
    assert png.is_file() and png.stat().st_size > 0, f"no page rendered to {png}"
    SAVED.append(png)
    print(f"report page: {png}")
    return png


def check_pdf(path: Path, month: str, what: str) -> str:
    assert path.read_bytes().startswith(b"%PDF-"), f"{what}: {path.name} is not a PDF"
    text = pdf_text(path)
    period = f"{month}-01"
    for expected in (NAME[SITE], REPORT_TITLE, period, VQR):
        assert expected in text, f"{what}: {expected!r} not in the PDF's text:\n{text[:3000]}"
    for site in ALL_ACCOUNTS.keys() - {SITE}:
        assert NAME[site] not in text, f"{what}: {NAME[site]} printed"
    return text


def click_download(driver: webdriver.Chrome, link_id: str, folder: Path, what: str) -> Path:
    allow_downloads(driver, folder)
    link = wait(driver).until(ec.element_to_be_clickable((By.ID, link_id)))
    assert link.get_attribute("download") is not None, f"{link_id} does not carry the download attribute"
    link.click()
    return wait_download(driver, folder, what)


def test_customer_portal_downloads_in_chinese(
    dashboard: Dashboard, browser: webdriver.Chrome, last_month_v1: Issue, tmp_path: Path
) -> None:
    assert dashboard.now_day is not None
    this, last = month_of(dashboard.now_day), previous_month(dashboard.now_day)
    assert last_month_v1.month == last
    login(browser, dashboard.url, CUSTOMER, PASSWORD, lang_link="lang-zh")

    # The portal: their account, in Chinese, with this month's figures and the trend drawn.
    wait_text(browser, "portal-title", PORTAL_TITLE)
    wait_text(browser, f"portal-name-{SITE}", NAME[SITE])
    card = f"portal-{SITE}"
    wait_text(browser, card, VQR)
    wait_until(
        browser,
        "the trend's bars",
        lambda: bool(browser.find_elements(By.CSS_SELECTOR, f"#portal-trend-{SITE} .barlayer .point path")),
    )
    for heading in (THIS_MONTH, YOUR_REPORTS):
        assert heading in element_text(browser, f"portal-{SITE}"), heading
    cards = browser.find_elements(By.CSS_SELECTOR, "#portal .portal-card")
    assert [c.get_attribute("id") for c in cards] == [card], "one card: the customer's account"
    source = browser.page_source
    for site in ALL_ACCOUNTS.keys() - {SITE}:
        assert NAME[site] not in source and f"portal-{site}" not in source, site
    assert "Your supply quality" not in source
    assert f"reports-{SITE}-{this}" in source and f"reports-{SITE}-{last}-v1" in source
    assert not browser.find_elements(By.ID, f"report-{SITE}-{last}-current"), "last month is issued"
    screenshot(browser, "portal-zh")

    # This month so far, then last month's issued version 1: clicked, saved, read back.
    now_pdf = click_download(browser, f"report-{SITE}-{this}-current", tmp_path / "this", "this month")
    assert now_pdf.name == f"PQ-{this.replace('-', '')}-{SITE}.{LANG}.pdf"
    check_pdf(now_pdf, this, "this month")
    first_page_png(now_pdf, "report-this-month-p1")

    v1_pdf = click_download(browser, f"report-{SITE}-{last}-v1", tmp_path / "last", "last month v1")
    assert v1_pdf.name == f"PQ-{last.replace('-', '')}-{SITE}-v1.{LANG}.pdf"
    check_pdf(v1_pdf, last, "last month v1")
    first_page_png(v1_pdf, "report-last-month-p1")

    # Another account's report typed into the address bar: the 404 page, nothing saved.
    refused = tmp_path / "refused"
    allow_downloads(browser, refused)
    browser.get(f"{dashboard.url}/reports/A002/{this}/current.{LANG}.pdf")
    wait_until(browser, "the 404 page", lambda: "Not Found" in browser.find_element(By.TAG_NAME, "body").text)
    assert NAME["A002"] not in browser.page_source
    assert list(refused.iterdir()) == [], "a file was saved for another account's report"
    # The control: the same URL for their own account does save a PDF into that folder.
    browser.get(f"{dashboard.url}/reports/{SITE}/{this}/current.{LANG}.pdf")
    assert wait_download(browser, refused, "the typed URL of their own report").suffix == ".pdf"

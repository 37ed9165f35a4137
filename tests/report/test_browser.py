"""report.html in headless Chromium: no console errors, one row per image, sorting, details.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the PyPI package
``selenium``; skips with the reason when one is missing (CI installs them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from codegraph_ad.report.browser import BrowserUnavailable, chromium_driver, console_errors
from codegraph_ad.report.html import ReportConfig, write_report

@pytest.fixture
def browser(tmp_path):
    try:
        driver = chromium_driver(tmp_path / "chromium-profile")
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield driver
    finally:
        driver.quit()


def _save_screenshot(driver, tmp_path: Path, name: str) -> None:
    png = driver.get_screenshot_as_png()
    (tmp_path / name).write_bytes(png)
    target = os.environ.get("CODEGRAPH_AD_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / name).write_bytes(png)


def _column(driver, key: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#images-table tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.querySelector('td[data-key=\"' + arguments[0] + '\"]')"
        ".getAttribute('data-value') || r.querySelector('td[data-key=\"' + arguments[0] + '\"]').textContent);",
        key,
    )


def _check_page(driver, run: Path, tmp_path: Path, shot: str) -> None:
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    n = len(json.loads((run / "run.json").read_text())["names"])
    driver.get((run / "report.html").resolve().as_uri())
    assert len(driver.find_elements(By.CSS_SELECTOR, "#images-table tbody tr")) == n
    scores = [float(x) for x in _column(driver, "score")]
    assert scores == sorted(scores, reverse=True)
    header = driver.find_element(By.CSS_SELECTOR, '#images-table th[data-sort="score"]')
    header.click()
    scores = [float(x) for x in _column(driver, "score")]
    assert scores == sorted(scores)
    header.click()
    assert [float(x) for x in _column(driver, "score")] == sorted(scores, reverse=True)
    driver.find_element(By.CSS_SELECTOR, '#images-table th[data-sort="name"]').click()
    names = _column(driver, "name")
    assert names == sorted(names)
    _save_screenshot(driver, tmp_path, f"{shot}_table.png")
    # Details: the first row opens a panel whose images all decode.
    driver.find_element(By.CSS_SELECTOR, "#images-table tbody tr").click()
    assert not driver.find_element(By.ID, "detail").get_attribute("hidden")
    decoded = (
        "const imgs = Array.from(document.querySelectorAll('#detail-views img'));"
        "return imgs.length >= 3 && imgs.every(i => i.complete && i.naturalWidth > 0);"
    )
    WebDriverWait(driver, 15).until(lambda d: d.execute_script(decoded))
    _save_screenshot(driver, tmp_path, f"{shot}_detail.png")
    driver.find_element(By.ID, "detail-close").click()
    # Filtering by text hides the other rows.
    box = driver.find_element(By.ID, "filter-text")
    box.send_keys(names[0])
    assert len(_column(driver, "name")) == sum(1 for x in names if names[0].lower() in x.lower())
    assert console_errors(driver) == []


def test_report_in_browser(browser, evaluated_run, tmp_path):
    write_report(evaluated_run)
    _check_page(browser, evaluated_run, tmp_path, "report_inline")


def test_report_with_asset_chunks_in_browser(browser, evaluated_run, tmp_path):
    """The on-demand chunk path: details load from report_assets/ by a script tag."""
    run = tmp_path / "run_copy"
    shutil.copytree(evaluated_run, run)
    write_report(run, ReportConfig(inline_detail_max_images=0, assets_chunk_images=3))
    _check_page(browser, run, tmp_path, "report_chunks")


def test_repeated_defect_section_on_top_in_browser(browser, tmp_path):
    """A run with a flagged group: its section is the first thing on the page, in view
    without scrolling, its thumbnails decode and one opens the member's detail view."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.report.runs import PLANTED, planted_codegraph_run

    run = planted_codegraph_run(tmp_path)
    browser.get((run / "report.html").resolve().as_uri())
    section = browser.find_element(By.ID, "repeated-defect-1")
    assert section.is_displayed()
    assert section.find_element(By.TAG_NAME, "h2").text == f"{len(PLANTED)} images share a repeated defect"
    layout = browser.execute_script(
        "const s = document.querySelector('main > section');"
        "const g = document.getElementById('repeated-defect-1').getBoundingClientRect();"
        "const m = document.getElementById('summary').getBoundingClientRect();"
        "return {first: s.id, top: g.top, bottom: g.bottom, summary: m.top, view: window.innerHeight};")
    assert layout["first"] == "repeated-defect-1"
    assert 0 <= layout["top"] < layout["summary"] and layout["bottom"] <= layout["view"], layout
    decoded = ("const imgs = Array.from(document.querySelectorAll('#repeated-defect-1 .group-thumb img'));"
               "return imgs.length === arguments[0] && imgs.every(i => i.complete && i.naturalWidth >= 100);")
    WebDriverWait(browser, 15).until(lambda d: d.execute_script(decoded, len(PLANTED)))
    _save_screenshot(browser, tmp_path, "report_repeated_defect.png")
    browser.find_element(By.CSS_SELECTOR, "#repeated-defect-1 .group-thumb img").click()
    assert not browser.find_element(By.ID, "detail").get_attribute("hidden")
    assert browser.find_element(By.ID, "detail-title").text == f"im{PLANTED[0]:02d}"
    assert console_errors(browser) == []

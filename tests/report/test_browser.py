"""report.html in headless Chromium: no console errors, one row per image, sorting, details.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the PyPI package
``selenium``; skips with the reason when one is missing (CI installs them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from codegraph_ad.report.html import ReportConfig, write_report

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = _binary("chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium or chromedriver not found (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(60)
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


def _severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


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
    assert _severe(driver) == []


def test_report_in_browser(browser, evaluated_run, tmp_path):
    write_report(evaluated_run)
    _check_page(browser, evaluated_run, tmp_path, "report_inline")


def test_report_with_asset_chunks_in_browser(browser, evaluated_run, tmp_path):
    """The on-demand chunk path: details load from report_assets/ by a script tag."""
    run = tmp_path / "run_copy"
    shutil.copytree(evaluated_run, run)
    write_report(run, ReportConfig(inline_detail_max_images=0, assets_chunk_images=3))
    _check_page(browser, run, tmp_path, "report_chunks")

"""Headless Chromium for looking at a report the way a user does (tests and screenshots).

Needs the PyPI package ``selenium`` (the ``dev`` extra) and the Debian packages ``chromium``
and ``chromium-driver``; ``BrowserUnavailable`` says which one is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class BrowserUnavailable(RuntimeError):
    """selenium, chromium or chromedriver is not installed."""


def _binary(*names: str) -> str | None:
    return next((found for found in map(shutil.which, names) if found), None)


def chromium_driver(profile: Path, window: tuple[int, int] = (1280, 1600), page_timeout_s: float = 60) -> Any:
    """A headless Chromium WebDriver with browser console logging on; the caller quits it.

    profile: a fresh folder for the browser profile (a shared one leaks state between runs).
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise BrowserUnavailable("selenium is not installed (pip install selenium)") from exc
    chromium = _binary("chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("chromedriver")
    if chromium is None or driver_path is None:
        raise BrowserUnavailable("chromium or chromedriver not found (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(page_timeout_s)
    return driver


def console_errors(driver: Any) -> list[dict]:
    """Browser console messages at level SEVERE since the last call."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]

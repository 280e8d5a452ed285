"""The browser harness: Debian's headless Chromium driven by Selenium, for the tests and the screenshots.

Selenium talks to ``/usr/bin/chromedriver`` (Debian's ``chromium-driver``)
and starts ``/usr/bin/chromium``; nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> tuple[str | None, str | None, str]:
    """(chromium, chromedriver, why-not): the binaries, or None with the reason one is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, None, "selenium is not installed (pip install -e '.[dev]')"
    browser = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return (
            browser,
            driver,
            "Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)",
        )
    return browser, driver, ""


def start_browser(width: int = 1440, height: int = 900) -> Any:
    """A headless Chromium (a selenium WebDriver) with a laptop-sized window."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver, why = find_browser()
    if why:
        raise RuntimeError(why)
    options = webdriver.ChromeOptions()
    options.binary_location = browser or ""
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    service = Service(executable_path=driver or "", log_output=os.devnull)
    return webdriver.Chrome(options=options, service=service)


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Wait until ``condition(driver)`` is truthy; returns its value."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page re-renders lists as data arrives: an element found just before is looked up again.
    wait = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(condition, what)

"""Headless Debian Chromium driven by Selenium through Debian's chromedriver: nothing is
downloaded (Selenium Manager is never asked: both paths are given)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1366,768")

T = TypeVar("T")


def missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (scripts/setup installs chromium chromium-driver)"
    return None


class Browser:
    def __init__(self, profile_root: Path):
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=profile_root))
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self.profile}")
        os.environ["SE_OFFLINE"] = "true"  # belt and braces: never fetch a driver
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(30)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def text(self) -> str:
        return self.driver.find_element("tag name", "body").text

    def source(self) -> str:
        return self.driver.page_source

    def css(self, selector: str):
        return self.driver.find_elements("css selector", selector)

    def wait(self, what: str, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Poll `fn` until it returns something truthy (bounded); fail naming `what`."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = fn()
                if value:
                    return value
            except WebDriverException as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))

    def accept_confirm(self) -> None:
        def accept() -> bool:
            try:
                self.driver.switch_to.alert.accept()
                return True
            except NoAlertPresentException:
                return False
        self.wait("the confirmation dialog", accept, 10)

    def screenshot(self, path: Path) -> Path:
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

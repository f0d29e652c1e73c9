"""The report in a real browser through Selenium (a maintained driver), with Debian's Chromium
and its chromedriver: no download, no network. ``open_page`` gives a driver whose viewport is
exactly the given size, with the browser console and network events logged."""

from __future__ import annotations

import json
import shutil
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def _which(*names: str) -> str | None:
    return next((p for n in names if (p := shutil.which(n))), None)


def open_page(url: str, *, width: int = 1366, height: int = 900) -> webdriver.Chrome:
    browser = _which("chromium", "chromium-browser", "google-chrome")
    driver = _which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("no chromium or chromedriver: apt-get install chromium "
                           "chromium-driver (make test's set-up does)")
    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        chrome.get(url)
    except BaseException:
        chrome.quit()
        raise
    return chrome


def requests(chrome: webdriver.Chrome) -> list[str]:
    """The URLs the page requested (from the performance log's network events)."""
    urls = []
    for entry in chrome.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_problems(chrome: webdriver.Chrome) -> list[dict[str, Any]]:
    return [e for e in chrome.get_log("browser") if e.get("level") in ("SEVERE", "WARNING")]

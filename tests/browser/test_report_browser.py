"""The report in a real browser (headless Chromium): no console errors, no network requests,
readable at a laptop's width. The screenshot is kept in the test's folder for a reviewer."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lab.report import render_file

from .cdp import Browser

pytestmark = pytest.mark.browser
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-cp39-cp315-quick.json"


@pytest.fixture
def page(tmp_path: Path):
    html = render_file(GOLDEN, output=tmp_path / "index.html")
    browser = Browser(width=1366, height=900)
    try:
        session = browser.open(html.as_uri())
        yield browser, session, tmp_path
    finally:
        browser.close()


def test_no_console_errors_and_no_network_requests(page):
    browser, session, tmp_path = page
    requests = [e["params"]["request"]["url"] for e in browser.events
                if e.get("method") == "Network.requestWillBeSent"]
    assert all(u.startswith("file://") for u in requests), requests
    assert len(requests) == 1  # the page itself, nothing else
    errors = [e for e in browser.events
              if e.get("method") in ("Runtime.exceptionThrown",)
              or (e.get("method") == "Runtime.consoleAPICalled"
                  and e["params"].get("type") in ("error", "warning"))
              or (e.get("method") == "Log.entryAdded"
                  and e["params"]["entry"].get("level") in ("error", "warning"))]
    assert errors == []


def test_fits_a_laptop_and_screenshot_is_taken(page):
    browser, session, tmp_path = page
    # Nothing wider than the window except inside horizontal scrollers.
    width = browser.evaluate(session, "document.documentElement.scrollWidth")
    assert width <= 1366
    shot = tmp_path / "report-1366.png"
    browser.screenshot(session, str(shot))
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1366, 900)
    # What a reader sees first: the title and the outcome counts.
    text = browser.evaluate(session, "document.body.innerText.slice(0, 600)")
    assert "Python Concurrency Lab" in text and "hung" in text


README_PICTURE = Path(__file__).resolve().parents[2] / "docs" / "report.png"
FULL_RUN = Path(__file__).resolve().parents[1] / "golden" / "run-default-six-targets-v3.json"


def test_readme_picture_is_the_first_screen_of_a_full_run(tmp_path):
    """README's picture: this test makes it, from a real run of the default matrix (the
    golden file), so it shows what the current report looks like."""
    html = render_file(FULL_RUN, output=tmp_path / "index.html")
    browser = Browser(width=1366, height=900)
    try:
        session = browser.open(html.as_uri())
        text = browser.evaluate(session, "document.body.innerText.slice(0, 3000)")
        assert "What changes for your code" in text and "cp314" in text
        browser.screenshot(session, str(tmp_path / "first-screen.png"))
    finally:
        browser.close()
    shot = (tmp_path / "first-screen.png").read_bytes()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", shot[16:24]) == (1366, 900)
    README_PICTURE.parent.mkdir(exist_ok=True)
    if not README_PICTURE.is_file() or README_PICTURE.read_bytes() != shot:
        README_PICTURE.write_bytes(shot)  # a changed report: the picture follows
    readme = (README_PICTURE.parents[1] / "README.md").read_text()
    assert "](docs/report.png)" in readme


def test_hung_badge_leads_to_the_open_stack(page):
    browser, session, _ = page
    href = browser.evaluate(session, "document.querySelector('#hazards a.b.hung')"
                                     ".getAttribute('href')")
    assert href and href.startswith("#cell-")
    visible = browser.evaluate(
        session, f"(() => {{ const el = document.querySelector('{href} pre');"
                 " return !!el && el.offsetHeight > 0 && el.innerText.includes('Thread'); })()")
    assert visible

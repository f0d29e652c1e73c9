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
        session, f"(() => {{ const el = document.querySelector('{href}')"
                 ".closest('.stackgroup').querySelector('pre.shared');"
                 " return !!el && el.offsetHeight > 0 && el.innerText.includes('Thread'); })()")
    assert visible


def test_the_first_screen_answers_the_defaults_and_what_changed_in_3_14(tmp_path):
    """At 1366x900, without scrolling: every target's default start method and 3.14's
    changes; each finding's link then lands on an element that is shown."""
    import json

    data = json.loads(FULL_RUN.read_text())
    html = render_file(FULL_RUN, output=tmp_path / "index.html")
    browser = Browser(width=1366, height=900)
    try:
        session = browser.open(html.as_uri())
        on_screen = browser.evaluate(session, """(() => {
            const seen = [];
            for (const el of document.querySelectorAll('#findings li, #findings span.fd')) {
                const r = el.getBoundingClientRect();
                if (r.top >= 0 && r.bottom <= window.innerHeight) seen.push(el.innerText);
            }
            return seen.join('\\n'); })()""")
        for t in data["targets"]:
            assert f"{t['id']} {t['probe']['default_start_method']}" in on_screen, t["id"]
        assert "Changed on cp314 (cpython 3.14)" in on_screen
        hrefs = browser.evaluate(session, "Array.from(document.querySelectorAll("
                                          "'#findings a')).map(a => a.getAttribute('href'))")
        assert len(hrefs) > 10
        for href in hrefs:
            shown = browser.evaluate(session, f"""(() => {{
                const el = document.getElementById({json.dumps(href[1:])});
                if (!el) return false;
                el.scrollIntoView();
                const r = el.getBoundingClientRect();
                return r.height > 0 && r.top < window.innerHeight; }})()""")
            assert shown, href
    finally:
        browser.close()

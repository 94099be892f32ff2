"""The browser page of `digitlab serve`, in a real headless Chromium driven by Playwright: a 7 drawn with mouse
strokes is predicted as 7, and a photo of a number uploaded through the file input is read with its digits shown.
Screenshots go to $DIGITLAB_TEST_ARTIFACTS (default test-artifacts/ in the repository).

The tests skip where Playwright or Debian's chromium is missing, unless $DIGITLAB_REQUIRE_BROWSER is set (CI sets
it and installs chromium), so that a missing browser cannot pass unnoticed there."""

import os
import shutil
from pathlib import Path

import pytest
from serve_helpers import running_server

ROOT = Path(__file__).parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("DIGITLAB_REQUIRE_BROWSER"):
            pytest.fail(f"{why} ($DIGITLAB_REQUIRE_BROWSER is set)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    path = Path(os.environ.get("DIGITLAB_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory, serve_cache):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    need(sync_playwright is not None, "playwright is not installed (pip install playwright)")
    need(Path(CHROMIUM).is_file(), "chromium is not installed (apt-get install chromium)")
    with running_server(tmp_path_factory.mktemp("page-server"), cache=serve_cache) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#script option').length > 0")
        yield page
        browser.close()
        assert not errors, errors


def test_a_seven_drawn_with_the_mouse_is_read_as_7(page, artifacts):
    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    x0, y0, size = box["x"], box["y"], box["width"]

    def at(u, v):  # fractions of the pad
        return x0 + u * size, y0 + v * size

    page.mouse.move(*at(0.25, 0.22))  # the top bar, left to right
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(*at(0.25 + 0.5 * k / 10, 0.22))
    for k in range(1, 16):  # the stem, down and to the left
        page.mouse.move(*at(0.75 - 0.3 * k / 15, 0.22 + 0.6 * k / 15))
    page.mouse.up()
    page.wait_for_function("document.querySelector('#prediction').textContent === '7'", timeout=15_000)
    bars = page.locator("#bars .bar")
    assert bars.count() == 10
    page.screenshot(path=str(artifacts / "page-drawn-7.png"), full_page=True)
    page.click("#clear")
    assert page.locator("#prediction").text_content() == "–" and page.locator("#bars .bar").count() == 0


def test_an_uploaded_photo_of_a_number_is_read(page, artifacts):
    page.set_input_files("#file", str(ROOT / "samples" / "amount.png"))
    page.wait_for_selector("#strings .line", timeout=30_000)
    assert page.locator("#strings .line").first.text_content() == "316072"
    assert "confidence" in page.locator("#strings").text_content()
    page.wait_for_function("document.querySelector('#annotated').naturalWidth > 0")
    page.screenshot(path=str(artifacts / "page-read-amount.png"), full_page=True)

"""End to end in a real browser: Debian's headless Chromium, driven by Playwright, uses the web demo.

It types a prompt, plans, sees a bad edit refused with its reason, edits the plan, generates, and sees a
playable video that followed the edit. The page may load nothing from outside 127.0.0.1. Playwright uses the
system browser (``/usr/bin/chromium``); nothing downloads a browser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"no system Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)
pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e '.[dev]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install -e '.[dev]')")

from web_fixtures import served, tiny_service  # noqa: E402

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PROMPT = "a red circle moves right, then a blue square jumps"
SCREENSHOT = os.environ.get("DYSEN_DEMO_SCREENSHOT")
"""Set to a .png path to keep a screenshot of the page after generating."""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served(tiny_service(tmp_path_factory.mktemp("demo")), steps=2) as address:
        yield address


@pytest.fixture(scope="module")
def page(url: str) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 1500})
        finally:
            browser.close()


def test_prompt_plan_edit_generate_in_chromium(page: sync_api.Page, url: str) -> None:
    expect = sync_api.expect
    outside: list[str] = []
    page.on(
        "request", lambda r: outside.append(r.url) if urlsplit(r.url).hostname not in ("127.0.0.1", None) else None
    )
    page.goto(url)

    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#plan-button").click()
    plan = page.locator("#plan textarea")
    expect(plan).to_have_value(re.compile('"predicate": "moves right"'), timeout=30_000)
    expect(page.locator("#plan-status")).to_contain_text("planned with rules: 2 events")
    expect(page.locator("#timeline img")).to_be_visible()
    expect(page.locator("#boxes img")).to_be_visible()
    boxes = _picture(page, "#boxes img")
    assert boxes["natural"][0] >= 600 and boxes["shown"][0] >= 400, boxes  # nine keyframe panels, not a thumbnail
    timeline = _picture(page, "#timeline img")
    assert _text_px(timeline) >= 9, timeline  # its 8 pt columns as the page shows them
    assert _text_px(boxes) >= 9, boxes  # the boxes' labels (8 pt) too

    planned = plan.input_value()
    plan.fill(planned.replace('"end": 8', '"end": 80'))
    page.locator("#check-button").click()
    expect(page.locator("#plan-status")).to_contain_text("the plan cannot be used", timeout=30_000)
    expect(page.locator("#plan-status")).to_contain_text("ends at 80v but there are only 8 time steps")

    plan.fill(planned.replace("moves right", "moves left").replace('"direction": "right"', '"direction": "left"'))
    page.locator("#check-button").click()
    expect(page.locator("#plan-status")).to_contain_text("the plan is valid", timeout=30_000)
    boxes_now = page.locator("#boxes img")
    expect(boxes_now).not_to_have_attribute("src", boxes["src"], timeout=30_000)  # the edit moved the circle left

    page.locator("#generate-button").click()
    video = page.locator("#video video")
    expect(video).to_have_count(1, timeout=60_000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#video video');"
        " return v && v.error === null && v.readyState >= 2 && v.duration > 0; }",
        timeout=30_000,
    )
    expect(page.locator("#video-status")).to_contain_text("8 frames, 16x16")
    expect(page.locator("#dsg-used")).to_contain_text("moves left")
    for name in ("mp4", "gif", "json"):
        expect(page.locator(f"#download-{name}")).to_be_enabled()
    expect(page.locator("#boxes img")).to_be_visible()
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    assert outside == [], f"the page loaded from outside 127.0.0.1: {outside}"


def _picture(page: sync_api.Page, selector: str) -> dict:
    """An <img>'s source, natural size and size on the page (CSS pixels), once it has loaded."""
    page.wait_for_function(f"() => {{ const i = document.querySelector('{selector}'); return i && i.complete "
                           "&& i.naturalWidth > 0; }", timeout=30_000)  # fmt: skip
    return page.locator(selector).evaluate(
        "i => ({src: i.getAttribute('src'), natural: [i.naturalWidth, i.naturalHeight],"
        " shown: [i.getBoundingClientRect().width, i.getBoundingClientRect().height]})"
    )


def _text_px(picture: dict) -> float:
    """How tall 8 pt text of a 150 dpi picture is on the page, in CSS pixels (about 12 reads comfortably)."""
    return 8 * 150 / 72 * min(picture["shown"][0] / picture["natural"][0], 1.0)

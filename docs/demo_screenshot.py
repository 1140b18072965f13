"""Take docs/demo.png: ``dysen demo`` with the shipped model on 127.0.0.1, driven by Playwright in Debian's Chromium.

Usage: ``python docs/demo_screenshot.py [out.png]``. It plans the first example prompt, generates with the page's
own settings, waits for the video to play, and saves the page, reduced to 256 colours (a small PNG).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

PROMPT = "a red circle moves right, then a blue square jumps"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main(out: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(["dysen", "demo", "--host", "127.0.0.1", "--port", str(port)])
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
            page.goto(url)
            page.locator("#prompt textarea").fill(PROMPT)
            page.locator("#plan-button").click()
            expect(page.locator("#boxes img")).to_be_visible(timeout=60_000)
            page.locator("#generate-button").click()
            expect(page.locator("#video video")).to_have_count(1, timeout=600_000)
            page.wait_for_function(
                "() => { const v = document.querySelector('#video video'); return v && v.readyState >= 2; }",
                timeout=60_000,
            )
            page.wait_for_timeout(1500)  # a few frames in: the shapes have started to move
            page.screenshot(path=str(out), full_page=True)
            browser.close()
            if outside:
                raise SystemExit(f"the page loaded from outside 127.0.0.1: {outside}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    from PIL import Image

    with Image.open(out) as image:
        image.convert("RGB").quantize(256).save(out, optimize=True)
    print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/demo.png"))

"""The web page at `/` in headless Chromium against the running stack: how long until it has loaded,
and until the first comparison (both lists) is on screen, each in a fresh browser context (cold cache)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from seasonrec.config import Settings
from seasonrec.errors import SeasonrecError
from seasonrec.progress import progress

CHROMIUM = Path("/usr/bin/chromium")
# A load is a fresh context and four API calls, about a second: `--requests`' default of 300 would take minutes.
MAX_LOADS = 20
TIMEOUT_MS = 60_000
# Functions, not expressions: Playwright runs a string expression through eval, which the page's CSP forbids.
LOADED = "() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0"
TIMINGS = """() => ({
  load: performance.getEntriesByType("navigation")[0].loadEventEnd,
  compared: performance.getEntriesByName("seasonrec:compared")[0].startTime,
})"""


def _row(measure: str, ms: list[float], browser: str) -> dict:
    return {
        "from navigation start to": measure,
        "loads": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "browser": browser,
    }


def bench_page(settings: Settings, args) -> tuple[str, list[dict]]:
    from seasonrec.serving.stack import ServeStack

    stack = ServeStack(settings)
    if not stack.running():
        raise SeasonrecError(f"{stack.state_file}: no stack running; run seasonrec serve start first")
    if not CHROMIUM.is_file():
        raise SeasonrecError(f"{CHROMIUM}: Chromium not found; apt-get install chromium")
    from playwright.sync_api import sync_playwright

    loads = max(1, min(args.requests, MAX_LOADS))
    url = f"{stack.url}/"
    # Where reads need the token, the page finds it where a user would have typed it: this tab's sessionStorage.
    token = stack.write_token() if settings.auth.protect_reads else None
    load_ms, compared_ms = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            # The first load warms the stack's caches and is not timed.
            for n in progress(range(loads + 1), "page loads"):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                if token:
                    context.add_init_script(f"sessionStorage.setItem('seasonrec.token', {json.dumps(token)})")
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector("body[data-state=compared]", timeout=TIMEOUT_MS)
                page.wait_for_function(LOADED, timeout=TIMEOUT_MS)
                if page.is_visible("#alert"):
                    raise SeasonrecError(f"{url}: the page shows an error: {page.inner_text('#alert')[:300]}")
                timings = page.evaluate(TIMINGS)
                context.close()
                if n:
                    load_ms.append(timings["load"])
                    compared_ms.append(timings["compared"])
            version = browser.version
        finally:
            browser.close()
    rows = [
        _row("load event", load_ms, f"Chromium {version}"),
        _row("both lists shown", compared_ms, f"Chromium {version}"),
    ]
    return f"Web page: load and first comparison in headless Chromium ({url})", rows

"""Drive the page in Debian's Chromium with Playwright: open it, wait for verdicts and pictures."""

from __future__ import annotations

import re

CHROMIUM = "/usr/bin/chromium"
# Headless, and quiet: this machine's closed network refuses Chromium's background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A rendered verdict line: "muffin 🍪 99.8% ✅".
VERDICT = re.compile(r"^(muffin|chihuahua|neither) \S+ \d+\.\d%")


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(url)
    wait_for_verdicts(page, 3)
    return page


def verdicts(page) -> list[str]:
    return [
        text for text in page.locator("[data-testid=stMarkdownContainer] p").all_inner_texts() if VERDICT.match(text)
    ]


def wait_for_verdicts(page, count: int, timeout: float = 60_000) -> None:
    page.wait_for_function(
        """([pattern, count]) => [...document.querySelectorAll('[data-testid=stMarkdownContainer] p')]
            .filter(p => new RegExp(pattern).test(p.innerText)).length >= count""",
        arg=[VERDICT.pattern, count],
        timeout=timeout,
    )


def wait_for_pictures(page, count: int, timeout: float = 30_000) -> None:
    """Before a screenshot: `count` pictures shown (Streamlit fetches each after the verdicts) and the uploader."""
    page.wait_for_function(
        """count => [...document.querySelectorAll('[data-testid=stImage] img')]
            .filter(img => img.complete && img.naturalWidth > 0).length >= count""",
        arg=count,
        timeout=timeout,
    )
    page.locator("input[type=file]").wait_for(state="attached", timeout=timeout)

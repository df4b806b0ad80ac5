"""Drive the page in Debian's Chromium with Playwright: open it, wait for verdicts and pictures."""

from __future__ import annotations

import re
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

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
# Chromium's error for loads it aborted because the machine's network interfaces changed.
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
# A rendered verdict line: "muffin 🍪 99.8% ✅".
VERDICT = re.compile(r"^(muffin|chihuahua|neither) \S+ \d+\.\d%")


DESKTOP = {"width": 1280, "height": 1400}
PHONE = {"width": 390, "height": 844}  # CSS pixels: a current phone held upright


def open_page(browser, url: str, timeout: float = 60.0, **options):
    """A new page (its own browser context: `options` are its viewport, permissions...), the demo verdicts shown."""
    page = browser.new_page(**{"viewport": DESKTOP, **options})
    seen: list[str] = []  # what the browser reports going wrong, said if the verdicts never come
    page.on("console", lambda message: message.type == "error" and seen.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: seen.append(f"request failed: {request.url} {request.failure}"))
    deadline = time.monotonic() + timeout

    def load() -> None:
        try:
            page.goto(url, wait_until="commit")
        except PlaywrightError as error:  # the page itself aborted: said, and loaded again below
            if NETWORK_CHANGED not in str(error):
                raise
            seen.append(f"load failed: {error}")

    load()
    while not shows_verdicts(page, 3, timeout=2_000):
        if time.monotonic() > deadline:
            said = "\n".join(["the browser said:", *seen])
            raise AssertionError(f"3 verdicts not shown in {timeout:.0f} s; {what_it_shows(page)}\n{said}")
        if any(NETWORK_CHANGED in line for line in seen):
            # A container a test has just started changes this machine's network interfaces: Chromium then aborts
            # its loads in flight, and Streamlit's frontend, missing a script, never starts. Not the page's doing:
            # load it again.
            seen.clear()
            load()
    return page


def verdicts(page) -> list[str]:
    return [
        text for text in page.locator("[data-testid=stMarkdownContainer] p").all_inner_texts() if VERDICT.match(text)
    ]


def shows_verdicts(page, count: int, timeout: float) -> bool:
    """Whether the page shows `count` verdicts within `timeout` ms."""
    try:
        page.wait_for_function(
            """([pattern, count]) => [...document.querySelectorAll('[data-testid=stMarkdownContainer] p')]
                .filter(p => new RegExp(pattern).test(p.innerText)).length >= count""",
            arg=[VERDICT.pattern, count],
            timeout=timeout,
        )
    except PlaywrightTimeoutError:
        return False
    return True


def what_it_shows(page) -> str:
    return f"the page showed:\n{page.inner_text('body')}"


def wait_for_verdicts(page, count: int, timeout: float = 60_000) -> None:
    if not shows_verdicts(page, count, timeout):
        raise AssertionError(f"{count} verdicts not shown in {timeout / 1000:.0f} s; {what_it_shows(page)}")


def wait_for_pictures(page, count: int, timeout: float = 30_000) -> None:
    """Before a screenshot: `count` pictures shown (Streamlit fetches each after the verdicts) and the uploader."""
    page.wait_for_function(
        """count => [...document.querySelectorAll('[data-testid=stImage] img')]
            .filter(img => img.complete && img.naturalWidth > 0).length >= count""",
        arg=count,
        timeout=timeout,
    )
    page.locator("input[type=file]").wait_for(state="attached", timeout=timeout)


def fake_camera_video(photo: Path, video: Path, width: int = 640) -> Path:
    """The photo as a one-frame Y4M video (YUV 4:2:0), which Chromium's fake camera plays in a loop
    (--use-file-for-fake-video-capture); made at test time, never committed."""
    picture = Image.open(photo).convert("RGB")
    height = round(picture.height * width / picture.width / 2) * 2  # 4:2:0 halves both sides: even sizes
    luma, blue, red = picture.resize((width, height)).convert("YCbCr").split()
    half = (width // 2, height // 2)
    with video.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\nFRAME\n".encode())
        for plane in (luma, blue.resize(half), red.resize(half)):
            out.write(plane.tobytes())
    return video


def camera_args(video: Path) -> list[str]:
    """Chromium's flags for a fake camera playing `video`, allowed without asking."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]


def wider_than_the_screen(page) -> list[str]:
    """What sticks out past the viewport's right edge: the document's width, and every element shown there."""
    return page.evaluate(
        """() => [
            ...(document.documentElement.scrollWidth > window.innerWidth ? ['the document'] : []),
            ...[...document.querySelectorAll('body *')]
                .filter(e => { const box = e.getBoundingClientRect(); return box.width > 0 && box.right > innerWidth + 0.5 })
                .map(e => `${e.tagName} ${e.dataset.testid || e.className}`),
        ]"""
    )


def screenshot_whole(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the viewport grows to the content's height first
    (full_page alone would show the top of it only)."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": height})
    page.screenshot(path=path, full_page=True)

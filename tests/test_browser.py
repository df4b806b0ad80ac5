"""The page in a real browser: Debian's Chromium driven by Playwright, against `run-demo` from the installed wheel."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests import corpus
from tests.conftest import ROOT
from tests.servers import free_port, running, wait_for

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Headless, and quiet: this machine's closed network refuses Chromium's background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VERDICT = re.compile(r"^(muffin|chihuahua|neither) \S+ \d+\.\d%")
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def demo_url(app_venv, tmp_path_factory):
    """run-demo from the installed wheel (no TensorFlow), on a free port; yields (url, its log file)."""
    folder = tmp_path_factory.mktemp("run-demo")
    port = free_port()
    command = [app_venv / "bin" / "muffin-v-chihuahua", "run-demo", "--server.port", port, "--server.address", "127.0.0.1"]
    with running(command, folder / "run-demo.log", cwd=folder) as server:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", process=server)
        yield f"http://127.0.0.1:{port}", folder / "run-demo.log"


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(url)
    wait_for_verdicts(page, 3)
    return page


def verdicts(page) -> list[str]:
    return [text for text in page.locator("[data-testid=stMarkdownContainer] p").all_inner_texts() if VERDICT.match(text)]


def wait_for_verdicts(page, count: int, timeout: float = 60_000) -> None:
    page.wait_for_function(
        """([pattern, count]) => [...document.querySelectorAll('[data-testid=stMarkdownContainer] p')]
            .filter(p => new RegExp(pattern).test(p.innerText)).length >= count""",
        arg=[VERDICT.pattern, count], timeout=timeout,
    )


def demo_captions(page) -> list[str]:
    return [text for text in page.locator("[data-testid=stImageCaption]").all_inner_texts() if "true label" in text]


def upload(page, *files: tuple[str, bytes]) -> None:
    page.locator("input[type=file]").set_input_files(
        [{"name": name, "mimeType": "application/octet-stream", "buffer": data} for name, data in files]
    )


def test_three_demo_verdicts_then_shuffle_shows_others(browser, demo_url):
    url, _ = demo_url
    page = open_page(browser, url)
    assert len(verdicts(page)) == 3 and all(("✅" in v) or ("❌" in v) for v in verdicts(page))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "page.png", full_page=True)
    if os.environ.get("UPDATE_README_SCREENSHOT"):
        shutil.copy(ARTIFACTS / "page.png", ROOT / "docs" / "page.png")
    before = demo_captions(page)
    for _ in range(3):  # three random photos of 120 may repeat; three tries in a row cannot plausibly
        page.get_by_role("button", name="Shuffle & predict").click()
        try:
            page.wait_for_function(
                "before => [...document.querySelectorAll('[data-testid=stImageCaption]')].map(c => c.innerText)"
                ".filter(t => t.includes('true label')).join('|') !== before",
                arg="|".join(before), timeout=20_000,
            )
            break
        except Exception:
            continue
    wait_for_verdicts(page, 3)
    assert demo_captions(page) != before and len(verdicts(page)) == 3
    page.close()


def test_a_good_upload_gets_a_verdict_and_a_bad_one_an_error_while_the_page_works_on(browser, demo_url):
    url, _ = demo_url
    page = open_page(browser, url)
    upload(page, ("my-photo.jpg", corpus.DATASET_PHOTO.read_bytes()), ("broken.jpg", b"this is not a photo"))
    wait_for_verdicts(page, 4)
    page.get_by_text("broken.jpg: the file is not an image").wait_for(timeout=30_000)
    assert "Traceback" not in page.content()
    page.get_by_role("button", name="Shuffle & predict").click()  # the rest of the page still works
    wait_for_verdicts(page, 4)
    page.screenshot(path=ARTIFACTS / "page-uploads.png", full_page=True)
    page.close()


def test_several_browser_sessions_share_one_loaded_model(browser, demo_url):
    url, log = demo_url
    sessions = [browser.new_context() for _ in range(3)]
    pages = [context.new_page() for context in sessions]
    for page in pages:
        page.goto(url)
    for page in pages:
        wait_for_verdicts(page, 3)
    assert log.read_text().count("muffin-v-chihuahua: model loaded") == 1
    for context in sessions:
        context.close()

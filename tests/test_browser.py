"""The page in a real browser: Debian's Chromium driven by Playwright, against `run-demo` from the installed wheel,
with its embedded model and as the front end of the model service (INFERENCE_URL)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import corpus
from tests.conftest import ROOT
from tests.pages import (
    PHONE,
    open_page,
    screenshot_whole,
    verdicts,
    wait_for_pictures,
    wait_for_verdicts,
    wider_than_the_screen,
)
from tests.servers import ServiceProcess, clean_env, free_port, running, wait_for

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
MODEL_LOADED = "muffin-v-chihuahua: model loaded"  # the page's log line for each load of its embedded model


@pytest.fixture(scope="module")
def demo_url(app_venv, tmp_path_factory):
    """run-demo from the installed wheel (no TensorFlow), on a free port; yields (url, its log file)."""
    folder = tmp_path_factory.mktemp("run-demo")
    port = free_port()
    command = [
        app_venv / "bin" / "muffin-v-chihuahua",
        "run-demo",
        "--server.port",
        port,
        "--server.address",
        "127.0.0.1",
    ]
    with running(command, folder / "run-demo.log", cwd=folder) as server:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", process=server)
        yield f"http://127.0.0.1:{port}", folder / "run-demo.log"


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
    wait_for_pictures(page, 3)
    page.screenshot(path=ARTIFACTS / "page.png", full_page=True)
    before = demo_captions(page)
    for _ in range(3):  # three random photos of 120 may repeat; three tries in a row cannot plausibly
        page.get_by_role("button", name="Shuffle & predict").click()
        try:
            page.wait_for_function(
                "before => [...document.querySelectorAll('[data-testid=stImageCaption]')].map(c => c.innerText)"
                ".filter(t => t.includes('true label')).join('|') !== before",
                arg="|".join(before),
                timeout=20_000,
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
    wait_for_pictures(page, 4)
    page.screenshot(path=ARTIFACTS / "page-uploads.png", full_page=True)
    page.close()


LOOKED = "where the model looked"  # in a photo's caption while the overlay is on
TOGGLE = "Show where the model looked"


COMPARED_SIZE = (256, 256)  # a caption that wraps differently can move a photo's drawn height by a pixel


def pictures(page) -> list:
    """Each photo on the page (demo and uploads) as an RGB array, as the browser draws it, at COMPARED_SIZE."""
    return [
        np.asarray(Image.open(io.BytesIO(image.screenshot())).convert("RGB").resize(COMPARED_SIZE), dtype=np.float32)
        for image in page.locator("[data-testid=stImage] img").all()
    ]


def toggle_overlay(page, count: int, on: bool) -> None:
    """Click the toggle; wait until `count` photos show (or no longer show) the overlay, and are drawn."""
    sources = page.locator("[data-testid=stImage] img").evaluate_all("images => images.map(i => i.src)")
    page.get_by_text(TOGGLE).click()
    page.wait_for_function(
        """([looked, count, on, before]) => {
            const captions = [...document.querySelectorAll('[data-testid=stImageCaption]')].map(c => c.innerText);
            const images = [...document.querySelectorAll('[data-testid=stImage] img')];
            return captions.filter(t => t.includes(looked)).length === (on ? count : 0) && images.length === count
                && images.every((image, i) => image.src !== before[i] && image.complete && image.naturalWidth > 0);
        }""",
        arg=[LOOKED, count, on, sources],
        timeout=60_000,
    )


def test_the_overlay_toggles_on_and_off_for_the_demo_and_an_upload(browser, demo_url):
    url, _ = demo_url
    page = open_page(browser, url)
    upload(page, ("my-photo.jpg", corpus.DATASET_PHOTO.read_bytes()))
    wait_for_verdicts(page, 4)
    wait_for_pictures(page, 4)
    shown, plain = verdicts(page), pictures(page)
    captions = page.locator("[data-testid=stImageCaption]").all_inner_texts()
    assert len(captions) == 4 and not any(LOOKED in caption for caption in captions)  # off by default

    toggle_overlay(page, 4, on=True)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "page-heatmap-on.png", full_page=True)
    overlaid = pictures(page)
    assert verdicts(page) == shown  # the same verdicts, only the pictures change
    for before, after in zip(plain, overlaid, strict=True):
        assert np.abs(after - before).mean() > 10
        # The photo still shows through: the overlay follows its light and dark.
        assert np.corrcoef(before.mean(axis=2).ravel(), after.mean(axis=2).ravel())[0, 1] > 0.5

    toggle_overlay(page, 4, on=False)
    page.screenshot(path=ARTIFACTS / "page-heatmap-off.png", full_page=True)
    assert verdicts(page) == shown
    for before, again in zip(plain, pictures(page), strict=True):
        assert np.abs(again - before).mean() < 3  # the photos as they were
    assert "Traceback" not in page.content()


def upload_captions(page) -> list[str]:
    return [text for text in page.locator("[data-testid=stImageCaption]").all_inner_texts() if "true label" not in text]


def test_the_fake_cameras_photo_gets_a_verdict_and_the_csv_download_holds_the_verdicts_shown(camera_browser, demo_url):
    url, _ = demo_url
    page = open_page(camera_browser, url, permissions=["camera"])
    upload(page, ("my-photo.jpg", corpus.DATASET_PHOTO.read_bytes()))
    wait_for_verdicts(page, 4)
    page.get_by_text("Use the camera").click()
    # The button shows when the camera starts, before the fake camera's first frame may be drawn (a blank photo is
    # neither): take it once the video has played a while.
    page.wait_for_function(
        "() => [...document.querySelectorAll('video')].some(v => v.videoWidth > 0 && v.currentTime > 1)",
        timeout=60_000,
    )
    page.get_by_role("button", name="Take Photo").click()
    wait_for_verdicts(page, 5)
    [uploaded, filmed] = upload_captions(page)
    assert uploaded == "my-photo.jpg" and filmed.startswith("camera") and filmed.endswith(".jpg")
    shown = verdicts(page)[3:]
    assert shown[1].startswith("chihuahua ")  # the camera films a chihuahua the model knows well

    with page.expect_download() as download:
        page.get_by_role("button", name="Download these verdicts (CSV)").click()
    assert download.value.suggested_filename == "muffin-v-chihuahua-verdicts.csv"
    rows = list(csv.DictReader(Path(download.value.path()).read_text().splitlines()))
    assert [row["path"] for row in rows] == [uploaded, filmed]
    for row, line in zip(rows, shown, strict=True):
        figure = float(row["probability"] or row["evidence"])  # neither shows its evidence
        assert line.startswith(f"{row['verdict']} ") and f" {figure:.1%}" in line
        assert f"ImageNet: {row['top1']} " in page.inner_text("body")
    wait_for_pictures(page, 5)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot_whole(page, ARTIFACTS / "page-camera.png")
    page.close()


def test_on_a_phone_sized_screen_the_page_stacks_its_columns_and_nothing_is_wider_than_the_screen(browser, demo_url):
    url, _ = demo_url
    page = open_page(browser, url, viewport=PHONE, is_mobile=True, has_touch=True)
    phone_photo = "PXL_20261201_201530123.MP-a-long-name-as-phones-give.jpg"
    upload(page, (phone_photo, corpus.DATASET_PHOTO.read_bytes()), ("broken.jpg", b"not a photo"))
    wait_for_verdicts(page, 4)
    page.get_by_text("Model card").click()  # its long SHA-256 too
    page.get_by_text("model file:").wait_for(timeout=30_000)
    wait_for_pictures(page, 4)
    assert wider_than_the_screen(page) == []
    widths = page.locator("[data-testid=stImage] img").evaluate_all("images => images.map(i => i.clientWidth)")
    assert len(widths) == 4 and min(widths) > PHONE["width"] / 2  # one photo a row, not three squeezed side by side
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot_whole(page, ARTIFACTS / "page-phone.png")
    page.close()


def test_several_browser_sessions_share_one_loaded_model(browser, demo_url):
    url, log = demo_url
    sessions = [browser.new_context() for _ in range(3)]
    pages = [context.new_page() for context in sessions]
    for page in pages:
        page.goto(url)
    for page in pages:
        wait_for_verdicts(page, 3)
    assert log.read_text().count(MODEL_LOADED) == 1
    for context in sessions:
        context.close()


def test_the_front_end_shows_the_services_verdicts_names_it_when_it_is_gone_and_recovers(browser, app_venv, tmp_path):
    """run-demo from the wheel (no service libraries, no TensorFlow) with INFERENCE_URL: the service in the
    dev environment predicts, the page never loads a model."""
    service_port, page_port = free_port(), free_port()
    service_url, page_url = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{page_port}"
    service = first = ServiceProcess("onnx", port=service_port, log=tmp_path / "service.log")
    command = [
        app_venv / "bin" / "muffin-v-chihuahua",
        "run-demo",
        "--server.port",
        page_port,
        "--server.address",
        "127.0.0.1",
    ]
    try:
        with (
            first,
            running(
                command, tmp_path / "run-demo.log", cwd=tmp_path, env=clean_env(INFERENCE_URL=service_url)
            ) as server,
        ):
            wait_for(f"{page_url}/_stcore/health", process=server)
            page = open_page(browser, page_url)
            assert len(verdicts(page)) == 3
            ARTIFACTS.mkdir(exist_ok=True)
            wait_for_pictures(page, 3)
            page.screenshot(path=ARTIFACTS / "page-frontend.png", full_page=True)
            assert MODEL_LOADED not in (tmp_path / "run-demo.log").read_text()
            assert " POST /predict 200 " in first.log()  # the service's line for the request

            # The service goes away: the page names it, plainly.
            first.stop()
            page.reload()
            error = page.get_by_text(f"No predictions: the inference service at {service_url} cannot be reached")
            error.wait_for(timeout=60_000)
            try_again = page.get_by_role("button", name="Try again")
            try_again.wait_for(timeout=30_000)
            assert not verdicts(page)
            assert "Traceback" not in page.content() and page.locator("[data-testid=stException]").count() == 0
            page.screenshot(path=ARTIFACTS / "page-frontend-no-service.png", full_page=True)

            # ... and comes back on the same port: "Try again" brings the verdicts back.
            service = (
                ServiceProcess("onnx", port=service_port, log=tmp_path / "service-again.log").start().wait_until_ready()
            )
            try_again.click()
            wait_for_verdicts(page, 3)
            error.wait_for(state="detached", timeout=30_000)
            assert " POST /predict 200 " in service.log()
            assert MODEL_LOADED not in (tmp_path / "run-demo.log").read_text()
            page.close()
    finally:
        service.stop()

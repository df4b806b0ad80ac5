"""The Streamlit page, run by Streamlit's AppTest: demo verdicts, shuffle, good and bad uploads, the camera, the
CSV download, the bound on predictions at once, model card."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from streamlit.testing.v1 import AppTest

import muffin_v_chihuahua
from muffin_v_chihuahua import prediction_slots
from muffin_v_chihuahua.environment import ENGINE_VARIABLE, MODEL_DIR_VARIABLE
from tests import corpus
from tests.conftest import DEFAULT_FILES, PACKAGE

CARD = json.loads((PACKAGE / "model" / "card.json").read_text())
PAGE = Path(muffin_v_chihuahua.__file__).with_name("display_predictions_with_an_embedded_model.py")
VERDICT_MARKS = ("✅", "❌")


@pytest.fixture
def page(engine, monkeypatch) -> AppTest:
    monkeypatch.setenv(ENGINE_VARIABLE, engine)
    app = AppTest.from_file(str(PAGE), default_timeout=180)
    app.run()
    assert not app.exception
    return app


def verdicts(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown if m.value.startswith("**")]


def image_captions(app: AppTest) -> list[str]:
    return [image.caption for element in app.get("image") for image in element.proto.imgs]


def demo_captions(app: AppTest) -> list[str]:
    return [caption for caption in image_captions(app) if "true label" in caption]


def photo_never_seen(tag: str) -> bytes:
    """The dataset photo as a PNG whose bytes no other test sends: the process-wide cache cannot know it."""
    text = PngImagePlugin.PngInfo()
    text.add_text("test", tag)
    return corpus.encode(Image.open(corpus.DATASET_PHOTO), "PNG", pnginfo=text)


def test_title_and_three_demo_photos_with_verdicts(page):
    assert page.title[0].value == "Muffin 🍪 or chihuahua 🐶"
    demo = verdicts(page)
    assert len(demo) == 3
    assert all(
        v.split("**")[1] in ("muffin", "chihuahua", "neither") and any(mark in v for mark in VERDICT_MARKS)
        for v in demo
    )
    assert len(demo_captions(page)) == 3
    assert len(page.caption) >= 3  # the top-3 ImageNet labels under each verdict


def test_shuffle_shows_other_photos(page):
    before = demo_captions(page)
    for _ in range(3):  # three random photos of 120 could repeat; three tries cannot plausibly all repeat
        page.button[0].click().run()
        if demo_captions(page) != before:
            break
    assert demo_captions(page) != before
    assert len(verdicts(page)) == 3


def test_a_good_upload_gets_a_verdict_and_a_bad_one_an_error_naming_it(page, dataset_dir):
    photo = (dataset_dir / "muffin").iterdir().__next__().read_bytes()
    page.file_uploader[0].set_value([("mine.jpg", photo, "image/jpeg"), ("broken.jpg", b"not a photo", "image/jpeg")])
    page.run()
    assert not page.exception
    assert len(verdicts(page)) == 4  # three demo photos and the good upload
    assert "mine.jpg" in image_captions(page)
    assert verdicts(page)[-1].startswith("**muffin**")
    [error] = page.error
    assert "broken.jpg" in error.value and "not an image" in error.value


def test_the_model_card_engine_and_upload_limit_are_shown(page, engine):
    card = page.expander[0]
    assert card.label == "Model card"
    text = " ".join(m.value for m in card.markdown)
    shown = DEFAULT_FILES[engine]  # the engine at its default precision: onnx-int8 for onnx
    assert "backbone" in text and "accuracy" in text and "SHA-256" in text and f"engine: **{shown}**" in text
    assert "model version " in text and "app version " in text
    assert "MB each" in page.file_uploader[0].label


@pytest.fixture
def model_folder(tmp_path, monkeypatch) -> Path:
    """A copy of the model folder (the onnx engine's files), which the page takes from MUFFIN_V_CHIHUAHUA_MODEL_DIR."""
    folder = Path(shutil.copytree(PACKAGE / "model", tmp_path / "model", ignore=shutil.ignore_patterns("*.h5")))
    monkeypatch.setenv(ENGINE_VARIABLE, "onnx")
    monkeypatch.setenv(MODEL_DIR_VARIABLE, str(folder))
    return folder


def run_page() -> AppTest:
    app = AppTest.from_file(str(PAGE), default_timeout=180)
    app.run()
    assert not app.exception
    return app


def test_the_page_runs_the_model_folder_it_is_given_and_shows_its_version(model_folder):
    card = json.loads((model_folder / "card.json").read_text())
    (model_folder / "card.json").write_text(json.dumps({**card, "model_version": "2099.01.01+apart"}))
    app = run_page()
    assert len(verdicts(app)) == 3
    assert "model version 2099.01.01+apart" in " ".join(m.value for m in app.expander[0].markdown)


def test_a_tampered_model_folder_is_a_message_on_the_page_not_a_traceback(model_folder):
    model_file = model_folder / CARD["files"][DEFAULT_FILES["onnx"]]["file"]  # what the page runs by default
    model_file.write_bytes(b"\0" + model_file.read_bytes()[1:])
    app = run_page()
    [error] = app.error
    assert error.value.startswith(f"The model cannot run here: {model_file} is damaged or not the file its card.json")
    assert verdicts(app) == [] and "Traceback" not in error.value


def test_a_photo_that_is_neither_shows_neither_and_why(page):
    from builders.neither import negative_photos

    page.file_uploader[0].set_value([("my-cat.png", negative_photos()["cat"], "image/png")])
    page.run()
    assert not page.exception
    assert verdicts(page)[-1].startswith("**neither**") and verdicts(page)[-1].endswith("% evidence")
    assert any(m.value.startswith("_looks like a") and m.value.endswith(", not a chihuahua_") for m in page.markdown)


def test_every_corpus_case_gets_a_verdict_or_an_error_naming_it_and_the_page_keeps_working(page):
    page.file_uploader[0].set_value([(case.filename, case.data, "application/octet-stream") for case in corpus.cases()])
    page.run()
    assert not page.exception
    good, bad = corpus.good_cases(), corpus.bad_cases()
    assert len(verdicts(page)) == 3 + len(good)  # the demo photos and every good upload
    assert [caption for caption in image_captions(page) if "true label" not in caption] == [c.filename for c in good]
    errors = [error.value for error in page.error]
    assert len(errors) == len(bad)
    for case, error in zip(bad, errors, strict=True):
        assert error.startswith(f"{case.filename}: the ")
        assert "Traceback" not in error
    page.button[0].click().run()  # and the page still works
    assert not page.exception and len(verdicts(page)) == 3 + len(good)


def test_the_overlay_toggle_captions_every_photo_with_the_class_the_model_looked_for(page):
    from builders.neither import negative_photos

    page.file_uploader[0].set_value([("my-cat.png", negative_photos()["cat"], "image/png")])
    page.run()
    toggle = page.toggle(key="heatmap")
    assert toggle.value is False and not any("where the model looked" in c for c in image_captions(page))
    toggle.set_value(True).run()
    assert not page.exception
    captions = image_captions(page)
    assert len(captions) == 4 and all(" · where the model looked for a " in caption for caption in captions)
    # The cat is neither: its overlay is for the class the head leant to, as its reason says.
    leant = captions[-1].rsplit(" ", 1)[-1]
    assert captions[-1].startswith("my-cat.png") and verdicts(page)[-1].startswith("**neither**")
    assert any(m.value.endswith(f", not a {leant}_") for m in page.markdown)
    page.toggle(key="heatmap").set_value(False).run()
    assert not any("where the model looked" in caption for caption in image_captions(page))


def test_the_camera_starts_when_asked_and_its_photo_gets_a_verdict_after_the_uploads(page):
    assert not page.camera_input  # no camera (nor the browser's permission prompt) until asked
    page.toggle(key="camera").set_value(True).run()
    page.file_uploader[0].set_value([("mine.jpg", corpus.DATASET_PHOTO.read_bytes(), "image/jpeg")])
    page.camera_input[0].set_value(("camera.jpg", corpus.DATASET_PHOTO.read_bytes(), "image/jpeg"))
    page.run()
    assert not page.exception
    assert [c for c in image_captions(page) if "true label" not in c] == ["mine.jpg", "camera.jpg"]
    assert verdicts(page)[-1].startswith("**chihuahua**")


def test_a_download_button_appears_once_an_upload_has_a_verdict(page):
    assert not page.download_button
    page.file_uploader[0].set_value([("broken.jpg", b"not a photo", "image/jpeg")])
    page.run()
    assert not page.download_button  # an error is not a verdict
    page.file_uploader[0].set_value([("mine.jpg", corpus.DATASET_PHOTO.read_bytes(), "image/jpeg")])
    page.run()
    [button] = page.download_button
    assert button.label == "Download these verdicts (CSV)"


def test_when_every_prediction_slot_is_taken_a_new_photo_is_told_busy_and_try_again_predicts_it(
    page, engine, monkeypatch
):
    monkeypatch.setenv(prediction_slots.SLOTS_VARIABLE, "1")
    monkeypatch.setenv(prediction_slots.WAIT_VARIABLE, "0")
    slots = prediction_slots.shared(1)  # the page's own: the process-wide semaphore of that size
    with slots.held(wait=0):  # another session predicts
        page.file_uploader[0].set_value([("new.png", photo_never_seen(f"busy {engine}"), "image/png")])
        page.run()
        assert not page.exception
        [busy] = page.warning
        assert busy.value.startswith("No predictions: the model is busy with other visitors' photos (1 at once)")
        assert len(verdicts(page)) == 3  # the demo photos' verdicts were known: they needed no slot
    page.button(key="try-again-uploads").click().run()
    assert not page.warning and len(verdicts(page)) == 4


def test_a_rerun_does_not_predict_the_same_photo_again(page, engine, monkeypatch):
    page.file_uploader[0].set_value([("new.png", photo_never_seen(f"rerun {engine}"), "image/png")])
    page.run()
    assert len(verdicts(page)) == 4
    monkeypatch.setenv(prediction_slots.SLOTS_VARIABLE, "1")
    monkeypatch.setenv(prediction_slots.WAIT_VARIABLE, "0")
    with prediction_slots.shared(1).held(wait=0):  # a prediction now would be refused as busy
        page.run()  # a rerun, as any click makes, with the same upload and demo photos
        assert not page.exception and not page.warning
        assert len(verdicts(page)) == 4 and "new.png" in image_captions(page)

"""The Streamlit page, run by Streamlit's AppTest: demo verdicts, shuffle, good and bad uploads, model card."""

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import muffin_v_chihuahua
from muffin_v_chihuahua import engines
from muffin_v_chihuahua.classifier import MODEL_DIR_VARIABLE
from tests import corpus
from tests.conftest import PACKAGE

PAGE = Path(muffin_v_chihuahua.__file__).with_name("display_predictions_with_an_embedded_model.py")
VERDICT_MARKS = ("✅", "❌")


@pytest.fixture
def page(engine, monkeypatch) -> AppTest:
    monkeypatch.setenv(engines.ENGINE_VARIABLE, engine)
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
    assert "backbone" in text and "accuracy" in text and "SHA-256" in text and f"engine: **{engine}**" in text
    assert "model version " in text and "app version " in text
    assert "MB each" in page.file_uploader[0].label


@pytest.fixture
def model_folder(tmp_path, monkeypatch) -> Path:
    """A copy of the model folder (the onnx engine's files), which the page takes from MUFFIN_V_CHIHUAHUA_MODEL_DIR."""
    folder = Path(shutil.copytree(PACKAGE / "model", tmp_path / "model", ignore=shutil.ignore_patterns("*.h5")))
    monkeypatch.setenv(engines.ENGINE_VARIABLE, "onnx")
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
    model_file = model_folder / "muffin_v_chihuahua.onnx"
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
    [toggle] = page.toggle
    assert toggle.value is False and not any("where the model looked" in c for c in image_captions(page))
    toggle.set_value(True).run()
    assert not page.exception
    captions = image_captions(page)
    assert len(captions) == 4 and all(" · where the model looked for a " in caption for caption in captions)
    # The cat is neither: its overlay is for the class the head leant to, as its reason says.
    leant = captions[-1].rsplit(" ", 1)[-1]
    assert captions[-1].startswith("my-cat.png") and verdicts(page)[-1].startswith("**neither**")
    assert any(m.value.endswith(f", not a {leant}_") for m in page.markdown)
    page.toggle[0].set_value(False).run()
    assert not any("where the model looked" in caption for caption in image_captions(page))

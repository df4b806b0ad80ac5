"""evaluation_report: the text summary, the confusion matrix and reliability pictures as drawn, and index.html:
self-contained (checked in Chromium: no request but the file, every picture decoded) with every wrong photo."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from muffin_v_chihuahua import evaluation, evaluation_report, images
from muffin_v_chihuahua.classifier import NEITHER, Classifier, Label, Prediction
from muffin_v_chihuahua.evaluation import Outcome
from muffin_v_chihuahua.evaluation_report import CELL, LEFT, TOP, plot_position
from tests import pages
from tests.conftest import ROOT, imported_after

ARTIFACTS = ROOT / "test-artifacts"


def prediction(verdict: str, probability: float | None, reason: str | None = None) -> Prediction:
    return Prediction(verdict, probability, (Label("Chihuahua", 0.5),), evidence=0.7, reason=reason)


@pytest.fixture
def figures() -> dict:
    """100 muffins, one called chihuahua; 4 chihuahuas, 2 called neither; 2 other photos, one caught."""
    outcomes = [Outcome(f"m{i}.jpg", "muffin", prediction("muffin", 0.95)) for i in range(99)]
    outcomes += [Outcome("m99.jpg", "muffin", prediction("chihuahua", 0.65))]
    outcomes += [Outcome(f"c{i}.jpg", "chihuahua", prediction("chihuahua", 0.75)) for i in range(2)]
    outcomes += [Outcome(f"c{i}.jpg", "chihuahua", prediction(NEITHER, None, "unclear")) for i in range(2, 4)]
    outcomes += [Outcome("o0.png", NEITHER, prediction(NEITHER, None, "unclear"))]
    outcomes += [Outcome("o1.png", NEITHER, prediction("muffin", 0.75))]
    return evaluation.figures(outcomes, 1, [Path("photos")], "the onnx-int8 model")


def test_the_summary_gives_the_figures_per_class_the_confusion_matrix_and_the_wrong_photos(figures):
    lines = evaluation_report.summary(figures).splitlines()
    assert lines[0] == "106 photos judged (104 muffin or chihuahua, 2 other), 1 failed; by the onnx-int8 model"
    assert lines[2].split()[:2] == ["accuracy", f"{101 / 104:.1%}"]
    assert lines[3].split()[:2] == ["flagged", f"{2 / 104:.1%}"]
    assert lines[4].split()[:3] == ["neither", "caught", "50.0%"]
    assert lines[5].split()[:3] == ["calibration", "error", f"{figures['expected_calibration_error']:.3f}"]
    assert [line.split() for line in lines[7:11]] == [
        ["class", "precision", "recall", "F1", "support"],
        ["muffin", f"{99 / 100:.1%}", "99.0%", "99.0%", "100"],
        ["chihuahua", f"{2 / 3:.1%}", "50.0%", f"{4 / 7:.1%}", "4"],
        ["neither", f"{1 / 3:.1%}", "50.0%", "40.0%", "2"],
    ]
    assert [line.split() for line in lines[12:16]] == [
        ["truth", "\\", "verdict", "muffin", "chihuahua", "neither"],
        ["muffin", "99", "1", "0"],
        ["chihuahua", "0", "2", "2"],
        ["other", "1", "0", "1"],
    ]
    assert lines[17] == "wrong photos: 4"
    assert [line.split()[:4] for line in lines[19:]] == [
        ["m99.jpg", "muffin", "chihuahua", "65.0%"],
        ["c2.jpg", "chihuahua", "neither", "n/a"],
        ["c3.jpg", "chihuahua", "neither", "n/a"],
        ["o1.png", "other", "muffin", "75.0%"],
    ]


def cell_colour(picture: Image.Image, row: int, column: int) -> tuple[int, int, int]:
    """A cell's fill, a few pixels in from its top-left corner (its text is in the middle)."""
    return picture.getpixel((LEFT + column * CELL + 6, TOP + row * CELL + 6))


def test_the_confusion_matrix_colours_each_cell_by_its_rows_share(figures):
    picture = evaluation_report.confusion_picture(figures)
    assert picture.mode == "RGB"
    red, green, _ = cell_colour(picture, 0, 0)  # 99 of 100 muffins right: nearly the full green
    assert green > 130 and red < 45
    assert cell_colour(picture, 0, 2) == (255, 255, 255)  # no muffin called neither: white
    red, green, blue = cell_colour(picture, 0, 1)  # 1 muffin in 100 called chihuahua: a red tint that shows
    assert red > green + 20 and green == blue
    right, wrong = (cell_colour(picture, 1, column) for column in (1, 2))  # 2 of 4 chihuahuas right, 2 neither
    assert right[1] > right[0] + 40 and wrong[0] > wrong[1] + 40


def test_the_reliability_bars_reach_the_share_right_and_the_red_lines_the_mean_confidence(figures):
    picture = evaluation_report.reliability_diagram(figures)
    # 0.9..1: 99 muffins at 0.95, right; 0.7..0.8: 2 chihuahuas and another folder's photo at 0.75, 2 right;
    # 0.6..0.7: a muffin called chihuahua at 0.65, wrong.
    bins = {round(b["from"], 1): b for b in figures["calibration"] if b["photos"]}
    assert {key: (b["photos"], b["accuracy"]) for key, b in bins.items()} == {
        0.9: (99, 1.0),
        0.7: (3, pytest.approx(2 / 3)),
        0.6: (1, 0.0),
    }

    def bar_at(lower: float, share: float) -> bool:
        """Whether the bin's bar covers this share right (off the bar's middle, where its count is written)."""
        colour = picture.getpixel(plot_position(lower + 0.03, share))
        return np.abs(np.subtract(colour, evaluation_report.BAR_COLOUR)).max() < 10

    assert all(bar_at(0.9, share) for share in (0.02, 0.5, 0.9, 0.99))
    assert all(bar_at(0.7, share) for share in (0.02, 0.3, 0.64)) and not bar_at(0.7, 0.71)
    assert not any(bar_at(lower, share) for lower in (0.8, 0.6, 0.5, 0.1) for share in (0.02, 0.5))
    for lower, confidence in ((0.9, 0.95), (0.7, 0.75), (0.6, 0.65)):
        assert picture.getpixel(plot_position(lower + 0.03, confidence)) == evaluation_report.CONFIDENCE_COLOUR


def test_without_a_verdict_with_a_probability_the_diagram_has_no_bar():
    figures = evaluation.figures([Outcome("o.png", NEITHER, prediction(NEITHER, None, "unclear"))], 0, [], "x")
    pixels = np.asarray(evaluation_report.reliability_diagram(figures))
    assert not (np.abs(pixels - np.array(evaluation_report.BAR_COLOUR)).max(axis=2) < 10).any()


# ----- index.html on real photos -------------------------------------------------------------------------


ODD_NAME = '<i>not italic & "quoted" it\'s.jpg'  # a chihuahua, in muffin/: wrong


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory, dataset_dir) -> Path:
    """muffin/: 3 muffins and a chihuahua with an odd name; chihuahua/: 2 chihuahuas; other/: a cat."""
    from builders.neither import negative_photos

    root = tmp_path_factory.mktemp("report-photos")
    for label, count in (("muffin", 3), ("chihuahua", 2)):
        (root / label).mkdir()
        for photo in sorted((dataset_dir / label).iterdir())[:count]:
            shutil.copy(photo, root / label / photo.name)
    shutil.copy(dataset_dir / "chihuahua" / "1.jpg", root / "muffin" / ODD_NAME)
    (root / "other").mkdir()
    (root / "other" / "cat.png").write_bytes(negative_photos()["cat"])
    (root / "other" / "chihuahua-after-all.jpg").write_bytes((dataset_dir / "chihuahua" / "2.jpg").read_bytes())
    return root


@pytest.fixture(scope="module")
def outcomes(photo_set) -> list[Outcome]:
    classifier = Classifier("onnx")
    photos = evaluation.labelled_photos([photo_set])
    arrays = [images.decode(path.read_bytes(), classifier.input_size) for path, _ in photos]
    predictions = classifier.predict(arrays, heatmap=True)
    return [Outcome(str(path), truth, p) for (path, truth), p in zip(photos, predictions, strict=True)]


@pytest.fixture(scope="module")
def report(outcomes, tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("report") / "new" / "report"  # made, parents too
    figures = evaluation.figures(outcomes, 0, [Path("photos")], "the onnx-int8 model")
    evaluation_report.write(folder, figures, [outcome for outcome in outcomes if outcome.wrong])
    return folder, figures


def test_the_report_folder_holds_index_html_and_the_figures_as_report_json(report):
    folder, figures = report
    assert sorted(path.name for path in folder.iterdir()) == ["index.html", "report.json"]
    assert json.loads((folder / "report.json").read_text()) == figures
    assert [(Path(w["path"]).name, w["verdict"]) for w in figures["wrong"]] == [
        (ODD_NAME, "chihuahua"),
        ("chihuahua-after-all.jpg", "chihuahua"),
    ]


def test_the_page_escapes_names_and_loads_nothing_but_its_own_data_uris(report):
    text = (report[0] / "index.html").read_text()
    assert "<i>" not in text and "&lt;i&gt;not italic &amp; &quot;quoted&quot; it&#x27;s.jpg" in text
    sources = re.findall(r'\bsrc="([^"]*)"', text)
    assert len(sources) == 2 + 2 and all(source.startswith("data:image/") for source in sources)
    assert not re.search(r"\b(href|url\(|@import|<script|<link)", text)


def data_picture(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_each_wrong_photo_is_shown_with_its_heatmap_overlaid(report, outcomes):
    text = (report[0] / "index.html").read_text()
    *_, first, second = re.findall(r'\bsrc="([^"]*)"', text)  # the gallery's, after the two plots
    for uri, outcome in zip((first, second), [o for o in outcomes if o.wrong], strict=True):
        shown = np.asarray(data_picture(uri).convert("RGB"), dtype=np.float32)
        photo = Image.open(outcome.path).convert("RGB")
        photo.thumbnail((evaluation_report.GALLERY_SIDE,) * 2)
        assert shown.shape[:2] == (photo.height, photo.width)
        assert np.abs(shown - np.asarray(photo, dtype=np.float32)).mean() > 5  # coloured over, not the photo alone
    assert text.count("heatmap: where it looked for chihuahua") == 2


def test_a_wrong_photo_without_a_heatmap_is_shown_as_it_is(outcomes):
    wrong = next(outcome for outcome in outcomes if outcome.wrong)
    plain = Outcome(wrong.path, wrong.truth, replace(wrong.prediction, heatmap=None, heatmap_class=None))
    [uri] = re.findall(r'\bsrc="([^"]*)"', evaluation_report.gallery_card(plain))
    photo = Image.open(wrong.path).convert("RGB")
    photo.thumbnail((evaluation_report.GALLERY_SIDE,) * 2)
    shown = np.asarray(data_picture(uri).convert("RGB"), dtype=np.float32)
    assert np.abs(shown - np.asarray(photo, dtype=np.float32)).mean() < 3  # JPEG's loss alone
    assert "heatmap:" not in evaluation_report.gallery_card(plain)


def test_a_wrong_photo_gone_since_it_was_judged_is_named_without_a_picture(tmp_path):
    outcome = Outcome(str(tmp_path / "gone.jpg"), "muffin", prediction("chihuahua", 0.9))
    card = evaluation_report.gallery_card(outcome)
    assert "<img" not in card and "could not be read again: No such file or directory" in card


@pytest.mark.browser
def test_chromium_renders_the_report_with_no_request_but_the_file_and_every_picture_decoded(report, browser):
    index = (report[0] / "index.html").resolve()
    page = browser.new_page(viewport=pages.DESKTOP)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    def only_the_file(route):
        if route.request.url == index.as_uri():
            route.continue_()
        else:
            route.abort()

    page.route("**/*", only_the_file)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    widths = page.locator("img").evaluate_all("images => images.map(i => i.complete && i.naturalWidth)")
    assert len(widths) == 4 and all(width > 0 for width in widths)
    assert [url for url in requested if not url.startswith("data:")] == [index.as_uri()]
    assert page.get_by_text("Wrong photos (2)").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "evaluation-report.png", full_page=True)
    page.close()


def test_the_report_imports_neither_matplotlib_nor_sklearn():
    assert imported_after("import muffin_v_chihuahua.evaluation_report", ("matplotlib", "sklearn")) == []

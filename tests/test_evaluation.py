"""evaluation: the truth from folders, the verdicts from batch's Parquet parts, and the figures written with NumPy,
checked against scikit-learn's metrics on random cases and on the model's own verdicts."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from muffin_v_chihuahua import evaluation, images, ray_batch
from muffin_v_chihuahua.classifier import NEITHER, Classifier, Label, Prediction
from muffin_v_chihuahua.evaluation import LABELS, EvaluationError, Outcome
from tests.conftest import imported_after


def prediction(verdict: str, probability: float | None = 0.9, reason: str | None = None) -> Prediction:
    return Prediction(verdict, probability, (Label("Chihuahua", 0.5),), evidence=0.7, reason=reason)


# ----- the truth from folders -----------------------------------------------------------------------


def test_a_photos_truth_is_its_subfolders_class_and_any_other_subfolder_means_neither(tmp_path):
    for name in ("muffin/a.jpg", "chihuahua/deep/b.png", "bagels/c.jpg", "muffin/notes.txt", "loose.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert evaluation.labelled_photos([tmp_path]) == [
        (tmp_path / "bagels/c.jpg", NEITHER),
        (tmp_path / "chihuahua/deep/b.png", "chihuahua"),
        (tmp_path / "muffin/a.jpg", "muffin"),
    ]  # the loose photo has no label, the .txt is no photo


def test_no_labelled_photo_or_no_folder_is_an_evaluation_error(tmp_path):
    (tmp_path / "loose.jpg").write_bytes(b"")
    with pytest.raises(EvaluationError, match="no photos in subfolders of"):
        evaluation.labelled_photos([tmp_path])
    with pytest.raises(EvaluationError, match="is not a folder"):
        evaluation.labelled_photos([tmp_path / "loose.jpg"])


# ----- the figures against scikit-learn -----------------------------------------------------------


def random_labels(rng: np.random.Generator, size: int, labels: tuple[str, ...] = LABELS) -> list[str]:
    return [str(label) for label in rng.choice(labels, size)]


def assert_like_sklearn(truths: list[str], verdicts: list[str]) -> None:
    counts = evaluation.confusion_matrix(truths, verdicts)
    np.testing.assert_array_equal(counts, sklearn_confusion_matrix(truths, verdicts, labels=list(LABELS)))
    ours = evaluation.precision_recall_f1_support(counts)
    theirs = precision_recall_fscore_support(truths, verdicts, labels=list(LABELS), zero_division=np.nan)
    for mine, expected in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, expected, equal_nan=True)
    classes = [(truth, verdict) for truth, verdict in zip(truths, verdicts, strict=True) if truth != NEITHER]
    outcomes = [
        Outcome("photo.jpg", truth, prediction(verdict)) for truth, verdict in zip(truths, verdicts, strict=True)
    ]
    accuracy = evaluation.figures(outcomes, 0, [], "")["accuracy"]
    assert accuracy == (pytest.approx(accuracy_score(*zip(*classes, strict=True))) if classes else None)


@pytest.mark.parametrize("seed", range(20))
def test_confusion_precision_recall_f1_support_and_accuracy_are_sklearns_on_random_verdicts(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 40))
    # Some runs without one label among the truths or the verdicts: undefined figures are NaN in both.
    truths = random_labels(rng, size, LABELS if seed % 3 else LABELS[:2])
    verdicts = random_labels(rng, size, LABELS if seed % 4 else LABELS[1:])
    assert_like_sklearn(truths, verdicts)


@pytest.mark.parametrize("seed", range(10))
def test_the_reliability_bins_are_sklearns_calibration_curve(seed):
    rng = np.random.default_rng(seed)
    # Random confidences and some on the bins' edges, which belong to the bin below (0 to the first).
    confidences = np.concatenate([rng.uniform(0.5, 1.0, 60), np.linspace(0.0, 1.0, evaluation.BINS + 1)])
    correct = rng.random(confidences.size) < confidences
    counts, confidence, accuracy = evaluation.reliability(confidences, correct)
    right, mean = calibration_curve(correct, confidences, n_bins=evaluation.BINS, strategy="uniform", pos_label=True)
    filled = counts > 0
    np.testing.assert_allclose(accuracy[filled], right)
    np.testing.assert_allclose(confidence[filled], mean)
    assert np.isnan(accuracy[~filled]).all() and counts.sum() == confidences.size
    expected = np.sum(counts[filled] / confidences.size * np.abs(right - mean))
    assert evaluation.expected_calibration_error(confidences, correct) == pytest.approx(expected)


def test_the_expected_calibration_error_by_hand():
    # 0.9..1: 2 photos at 0.95, 1 right (0.45 off); 0.6..0.7: 2 at 0.65, both right (0.35 off); each half the photos.
    confidences, correct = np.array([0.95, 0.95, 0.65, 0.65]), np.array([True, False, True, True])
    assert evaluation.expected_calibration_error(confidences, correct) == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)
    assert evaluation.expected_calibration_error(np.array([]), np.array([], dtype=bool)) is None


def test_the_figures_name_the_wrong_photos_neither_caught_and_flagged():
    outcomes = [
        Outcome("m1.jpg", "muffin", prediction("muffin", 0.99)),
        Outcome("m2.jpg", "muffin", prediction(NEITHER, None, "looks like a bagel, not a muffin")),
        Outcome("c1.jpg", "chihuahua", prediction("chihuahua", 0.8)),
        Outcome("c2.jpg", "chihuahua", prediction("muffin", 0.6)),
        Outcome("o1.png", NEITHER, prediction(NEITHER, None, "unclear")),
        Outcome("o2.png", NEITHER, prediction("chihuahua", 0.7)),
        Outcome("o3.png", NEITHER, prediction(NEITHER, None, "unclear")),
    ]
    figures = evaluation.figures(outcomes, 2, [Path("photos")], "the model")
    assert (figures["n"], figures["failed"], figures["folders"], figures["judged_by"]) == (
        7,
        2,
        ["photos"],
        "the model",
    )
    assert figures["accuracy"] == pytest.approx(2 / 4)
    assert figures["flagged"] == pytest.approx(1 / 4) and figures["neither_caught"] == pytest.approx(2 / 3)
    assert figures["confusion_matrix"]["chihuahua"] == {"muffin": 1, "chihuahua": 1, NEITHER: 0}
    assert figures["confusion_matrix"][NEITHER] == {"muffin": 0, "chihuahua": 1, NEITHER: 2}
    assert figures["classes"]["muffin"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert figures["classes"][NEITHER]["precision"] == pytest.approx(2 / 3)
    assert [(wrong["path"], wrong["truth"], wrong["verdict"]) for wrong in figures["wrong"]] == [
        ("m2.jpg", "muffin", NEITHER),
        ("c2.jpg", "chihuahua", "muffin"),
        ("o2.png", NEITHER, "chihuahua"),
    ]
    assert figures["wrong"][0] == {
        "path": "m2.jpg",
        "truth": "muffin",
        "verdict": NEITHER,
        "probability": None,
        "evidence": 0.7,
        "reason": "looks like a bagel, not a muffin",
    }
    # Calibration over the 4 photos with a probability: 0.99 and 0.8 right, 0.6 (a chihuahua called muffin) and
    # 0.7 (another folder's photo called chihuahua) wrong.
    bins = {(round(b["from"], 1), b["photos"], b["accuracy"]) for b in figures["calibration"] if b["photos"]}
    assert bins == {(0.9, 1, 1.0), (0.7, 1, 1.0), (0.5, 1, 0.0), (0.6, 1, 0.0)}
    assert figures["expected_calibration_error"] == pytest.approx((0.01 + 0.2 + 0.6 + 0.7) / 4)


def test_figures_without_other_folders_leave_neither_caught_undefined():
    figures = evaluation.figures([Outcome("m.jpg", "muffin", prediction("muffin"))], 0, [], "")
    assert figures["neither_caught"] is None and figures["flagged"] == 0.0
    assert figures["classes"][NEITHER] == {"precision": None, "recall": None, "f1": None, "support": 0}


# ----- on real photos: the model's own verdicts ------------------------------------------------------


@pytest.fixture(scope="module")
def real_outcomes(dataset_dir, tmp_path_factory) -> list[Outcome]:
    """The dataset's 120 photos and the sample pictures (in other/: should be neither), judged by the model."""
    from builders.neither import negative_photos

    others = tmp_path_factory.mktemp("evaluation") / "other"
    others.mkdir()
    for name, data in negative_photos().items():
        (others / f"{name}.png").write_bytes(data)
    classifier = Classifier("onnx")
    photos = evaluation.labelled_photos([dataset_dir, others.parent])
    arrays = [images.decode(path.read_bytes(), classifier.input_size) for path, _ in photos]
    predictions = classifier.predict(arrays)
    return [Outcome(str(path), truth, p) for (path, truth), p in zip(photos, predictions, strict=True)]


def test_on_the_models_own_verdicts_the_figures_are_sklearns(real_outcomes):
    assert_like_sklearn([o.truth for o in real_outcomes], [o.prediction.verdict for o in real_outcomes])


def test_on_the_dataset_and_sample_pictures_the_model_is_right_and_catches_most(real_outcomes):
    figures = evaluation.figures(real_outcomes, 0, [], "onnx")
    assert figures["classes"]["muffin"]["support"] + figures["classes"]["chihuahua"]["support"] == 120
    assert figures["accuracy"] >= 0.95 and figures["flagged"] <= 0.05
    others = [o for o in real_outcomes if o.truth == NEITHER]
    caught = sum(o.prediction.verdict == NEITHER for o in others)
    assert figures["neither_caught"] == pytest.approx(caught / len(others)) and caught / len(others) >= 0.6
    assert 0 <= figures["expected_calibration_error"] < 0.2
    assert len(figures["wrong"]) == sum(o.wrong for o in real_outcomes)


# ----- the verdicts from batch's Parquet parts --------------------------------------------------------


def write_parts(folder: Path, rows: list[tuple[str, Prediction | str]], heatmap: bool = False) -> Path:
    """Parts as batch writes them: ray_batch.table's rows, split over two Parquet files (the first empty for one row)."""
    folder.mkdir()
    half = len(rows) // 2
    for index, part in enumerate((rows[:half], rows[half:])):
        paths, outcomes = [path for path, _ in part], [outcome for _, outcome in part]
        pyarrow.parquet.write_table(ray_batch.table(paths, outcomes, heatmap, flat=False), folder / f"{index}.parquet")
    return folder


def test_verdicts_come_from_the_parts_and_a_row_with_an_error_or_none_is_a_failure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # batch's paths as it was given them: relative to the folder it ran in
    photos = [(Path("photos/muffin/a.jpg"), "muffin"), (Path("photos/other/b.jpg"), NEITHER)]
    photos += [(Path("photos/chihuahua/c.jpg"), "chihuahua"), (Path("photos/muffin/d.jpg"), "muffin")]
    photos += [(Path("photos/muffin/e.jpg"), "muffin")]
    heat = ((0.0, 1.0), (2.0, 3.0))
    muffin = Prediction("muffin", 0.97, (Label("bagel", 0.4),), 0.9, None, heat, "muffin")
    neither = Prediction(
        NEITHER, None, (Label("pretzel", 0.8),), 0.01, "looks like a pretzel, not a muffin", heat, "muffin"
    )
    rows = [
        ("photos/muffin/a.jpg", muffin),
        (str(tmp_path / "photos/other/b.jpg"), neither),  # absolute: matched all the same
        ("photos/chihuahua/c.jpg", "the JPEG file is truncated or corrupt"),
        ("elsewhere/x.jpg", muffin),  # a photo batch saw that is not evaluated
        ("photos/muffin/e.jpg", neither),
    ]
    outcomes, failures = evaluation.read_verdicts(write_parts(tmp_path / "parts", rows, heatmap=True), photos)
    unheated = {"heatmap": None, "heatmap_class": None}
    assert outcomes == [  # the right photos' heatmaps dropped, the wrong one's kept for the report
        Outcome("photos/muffin/a.jpg", "muffin", replace(muffin, **unheated)),
        Outcome("photos/other/b.jpg", NEITHER, replace(neither, **unheated)),
        Outcome("photos/muffin/e.jpg", "muffin", neither),
    ]
    assert failures == [
        (Path("photos/chihuahua/c.jpg"), "the JPEG file is truncated or corrupt"),
        (Path("photos/muffin/d.jpg"), f"no row in {tmp_path / 'parts'}"),
    ]


def test_parts_without_heatmaps_give_predictions_without_them(tmp_path):
    photo = tmp_path / "photos" / "muffin" / "a.jpg"
    outcomes, _ = evaluation.read_verdicts(
        write_parts(tmp_path / "parts", [(str(photo), prediction("muffin"))]),
        [(photo, "muffin")],
    )
    assert outcomes == [Outcome(str(photo), "muffin", prediction("muffin"))]


def test_parts_that_name_none_of_the_photos_or_are_no_parquet_are_an_evaluation_error(tmp_path):
    photos = [(tmp_path / "photos/muffin/a.jpg", "muffin")]
    parts = write_parts(tmp_path / "parts", [("other/a.jpg", prediction("muffin"))])
    with pytest.raises(EvaluationError, match="names a photo in the folders"):
        evaluation.read_verdicts(parts, photos)
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "0.parquet").write_text('{"path": "a.jpg"}\n')
    for folder in (tmp_path / "jsonl", tmp_path / "nowhere"):
        with pytest.raises(
            EvaluationError, match=f"^{re.escape(str(folder))} is not a folder of batch's Parquet parts: "
        ):
            evaluation.read_verdicts(folder, photos)
    pyarrow.parquet.write_table(pyarrow.table({"path": ["a.jpg"]}), tmp_path / "other.parquet")
    with pytest.raises(EvaluationError, match="without batch's column"):
        evaluation.read_verdicts(tmp_path / "other.parquet", photos)


def test_without_pyarrow_verdicts_say_how_to_install_it(tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name == "pyarrow" or name.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it raises ImportError, as where it is missing
    with pytest.raises(EvaluationError, match="pyarrow, which is not installed: pip install pyarrow"):
        evaluation.read_verdicts(tmp_path, [])


def test_evaluation_imports_neither_sklearn_nor_pyarrow_nor_matplotlib():
    modules = ("sklearn", "pyarrow", "matplotlib")
    assert imported_after("import muffin_v_chihuahua.evaluation", modules) == []

"""`muffin-v-chihuahua evaluate`: how good the model is on labelled photos like a user's.

The truth is a photo's folder: under each FOLDER, `muffin/` and `chihuahua/` hold those classes and any other
subfolder holds photos that should be neither. The verdicts come from the model (the CLI runs it as predict does) or
from `batch`'s Parquet parts (read_verdicts). The figures are a few formulas written with NumPy: scikit-learn is no
runtime dependency (tests/test_evaluation.py checks them against its metrics)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from muffin_v_chihuahua import images
from muffin_v_chihuahua.classifier import Prediction
from muffin_v_chihuahua.evidence import NEITHER

CLASSES = ("muffin", "chihuahua")  # the folders that name a class; any other folder's photos should be neither
LABELS = (*CLASSES, NEITHER)
# Calibration bins: equal widths over 0..1, each holding the probabilities above its lower edge up to its upper one
# (the first also 0), as scikit-learn's calibration_curve(strategy="uniform") bins them.
BINS = 10
# batch's Parquet columns that make a Prediction (Prediction.to_dict's keys), and its failures'.
PART_COLUMNS = ("path", "verdict", "probability", "imagenet", "evidence", "reason", "error")
HEATMAP_COLUMNS = ("heatmap", "heatmap_class")  # in parts that batch --heatmap wrote


class EvaluationError(ValueError):
    """The folders or the verdicts cannot be evaluated (no labelled photo, parts that cannot be read): a usage
    problem, said in one line."""


@dataclass(frozen=True)
class Outcome:
    path: str  # as given, as predict shows it
    truth: str  # one of LABELS: what the photo's folder says it is
    prediction: Prediction

    @property
    def wrong(self) -> bool:
        return self.prediction.verdict != self.truth


def outcome(path: str, truth: str, prediction: Prediction) -> Outcome:
    """A photo's outcome; a right photo's heatmap is dropped: the report draws only the wrong photos', and a large
    evaluation need not hold every photo's."""
    if prediction.verdict == truth:
        prediction = replace(prediction, heatmap=None, heatmap_class=None)
    return Outcome(path, truth, prediction)


def truth_of(folder_name: str) -> str:
    return folder_name if folder_name in CLASSES else NEITHER


def labelled_photos(folders: Sequence[Path]) -> list[tuple[Path, str]]:
    """The photos in each folder's subfolders, with their truth; in a subfolder, photos are chosen as predict
    chooses a folder's (by suffix, recursively, sorted). A file directly in a folder has no label: not evaluated."""
    photos: list[tuple[Path, str]] = []
    for folder in folders:
        if not folder.is_dir():
            raise EvaluationError(f"{folder} is not a folder (of labelled subfolders: muffin/, chihuahua/, others)")
        for subfolder in sorted(path for path in folder.iterdir() if path.is_dir()):
            photos += [(path, truth_of(subfolder.name)) for path in images.photo_files([subfolder])]
    if not photos:
        raise EvaluationError(
            f"no photos in subfolders of {', '.join(map(str, folders))}: put them in muffin/, chihuahua/, or any "
            "other subfolder for photos that are neither"
        )
    return photos


def read_verdicts(parts: Path, photos: Sequence[tuple[Path, str]]) -> tuple[list[Outcome], list[tuple[Path, str]]]:
    """The photos' outcomes from `batch`'s Parquet parts in the folder `parts`, a row matched to a photo by its
    absolute path (as batch was given it, from this working folder); and the photos that failed, each with why:
    its row's error, or no row. pyarrow is imported here, only for this: the plain wheel's runtime lacks it."""
    try:
        import pyarrow
        import pyarrow.dataset
    except ImportError:
        raise EvaluationError(
            "--verdicts reads batch's Parquet parts with pyarrow, which is not installed: pip install pyarrow "
            "(or 'muffin-v-chihuahua[ray]')"
        ) from None
    try:
        dataset = pyarrow.dataset.dataset(parts, format="parquet")
        missing = [name for name in PART_COLUMNS if name not in dataset.schema.names]
        if missing:
            raise EvaluationError(f"{parts} holds Parquet without batch's column(s) {', '.join(missing)}")
        columns = [*PART_COLUMNS, *(name for name in HEATMAP_COLUMNS if name in dataset.schema.names)]
        rows = {os.path.abspath(row["path"]): row for row in dataset.to_table(columns=columns).to_pylist()}
    except (OSError, pyarrow.ArrowException) as error:  # not there, or not Parquet
        raise EvaluationError(f"{parts} is not a folder of batch's Parquet parts: {error}") from None
    found = [rows.get(os.path.abspath(path)) for path, _ in photos]
    if all(row is None for row in found):
        raise EvaluationError(f"no row of {parts} names a photo in the folders: run batch on them from this folder")
    outcomes, failures = [], []
    for (path, truth), row in zip(photos, found, strict=True):
        if row is None:
            failures.append((path, f"no row in {parts}"))
        elif row["error"]:
            failures.append((path, str(row["error"])))
        else:
            outcomes.append(outcome(str(path), truth, Prediction.from_dict(row)))
    return outcomes, failures


Counts = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def confusion_matrix(truths: Sequence[str], verdicts: Sequence[str]) -> Counts:
    """counts[i, j]: the photos whose truth is LABELS[i] and verdict LABELS[j] (rows: truth, as scikit-learn's)."""
    index = {label: position for position, label in enumerate(LABELS)}
    counts = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    np.add.at(counts, ([index[truth] for truth in truths], [index[verdict] for verdict in verdicts]), 1)
    return counts


def divided(numerator: Floats | Counts, denominator: Floats | Counts) -> Floats:
    """numerator / denominator, NaN where the denominator is 0 (undefined: scikit-learn's zero_division=np.nan)."""
    quotient = np.full(np.shape(numerator), np.nan)
    return np.divide(numerator, denominator, out=quotient, where=np.asarray(denominator) != 0)


def precision_recall_f1_support(counts: Counts) -> tuple[Floats, Floats, Floats, Counts]:
    """Per label of the confusion matrix: precision (right among the photos called it), recall (called it among
    the photos that are it), F1 (2·right / (called + are), their harmonic mean) and support (the photos that are
    it); NaN where undefined, as scikit-learn's precision_recall_fscore_support(zero_division=np.nan)."""
    right = np.diag(counts)
    called, support = counts.sum(axis=0), counts.sum(axis=1)
    return divided(right, called), divided(right, support), divided(2 * right, called + support), support


def reliability(confidences: Floats, correct: npt.NDArray[np.bool_]) -> tuple[Counts, Floats, Floats]:
    """Per BINS bin of confidence: how many photos, their mean confidence, the share of them right (NaN if none)."""
    bins = np.searchsorted(np.linspace(0.0, 1.0, BINS + 1)[1:-1], confidences)  # (lower, upper]; 0 in the first
    counts = np.bincount(bins, minlength=BINS)
    confidence = divided(np.bincount(bins, weights=confidences, minlength=BINS), counts)
    accuracy = divided(np.bincount(bins, weights=correct, minlength=BINS), counts)
    return counts, confidence, accuracy


def expected_calibration_error(confidences: Floats, correct: npt.NDArray[np.bool_]) -> float | None:
    """Σ over bins of (photos in the bin / photos) · |share right − mean confidence|, None for no photo."""
    counts, confidence, accuracy = reliability(confidences, correct)
    filled = counts > 0
    if not filled.any():
        return None
    return float(np.sum(counts[filled] / counts.sum() * np.abs(accuracy[filled] - confidence[filled])))


def share(hits: npt.NDArray[np.bool_]) -> float | None:
    """The share of True, None for none at all."""
    return float(hits.mean()) if hits.size else None


def number(value: float) -> float | None:
    """JSON's null for NaN (undefined)."""
    return None if np.isnan(value) else float(value)


def figures(outcomes: Sequence[Outcome], failed: int, folders: Sequence[Path], judged_by: str) -> dict[str, Any]:
    """What `evaluate --json` prints and report.json holds, JSON-ready; null where a figure is undefined:

    - n: the photos judged; failed: the files that could not be (not in n);
    - accuracy: the share of the muffin and chihuahua photos given their class (neither is wrong there);
    - classes: per label (muffin, chihuahua, neither, the truth of other folders' photos) precision, recall, f1
      and support, over all photos;
    - confusion_matrix[truth][verdict]: how many photos;
    - neither_caught: the share of other folders' photos called neither; flagged: the share of muffin and
      chihuahua photos called neither;
    - expected_calibration_error: over the photos not called neither (the others have no probability), the
      confidence is Prediction.probability, the head's probability of the verdict, and a photo is right when
      its verdict is its truth (another folder's photo called muffin is wrong); they are put in BINS bins of
      equal width over 0..1, each holding the confidences above its lower edge up to its upper edge (the first
      also 0); the ECE is the mean over bins, weighted by their photos, of |share right − mean confidence|;
      calibration: those bins (photos, confidence, accuracy) for the reliability diagram;
    - wrong: each photo whose verdict is not its truth: path, truth, verdict, probability, evidence, reason.
    """
    truths = [outcome.truth for outcome in outcomes]
    verdicts = [outcome.prediction.verdict for outcome in outcomes]
    truth, verdict = np.array(truths, dtype=object), np.array(verdicts, dtype=object)
    is_class = np.isin(truth, CLASSES)
    return {
        "folders": [str(folder) for folder in folders],
        "judged_by": judged_by,
        "n": len(outcomes),
        "failed": failed,
        "accuracy": share(truth[is_class] == verdict[is_class]),
        **label_figures(confusion_matrix(truths, verdicts)),
        "neither_caught": share(verdict[~is_class] == NEITHER),
        "flagged": share(verdict[is_class] == NEITHER),
        **calibration_figures(outcomes),
        "wrong": [
            {
                "path": outcome.path,
                "truth": outcome.truth,
                "verdict": outcome.prediction.verdict,
                "probability": outcome.prediction.probability,
                "evidence": outcome.prediction.evidence,
                "reason": outcome.prediction.reason,
            }
            for outcome in outcomes
            if outcome.wrong
        ],
    }


def label_figures(counts: np.ndarray) -> dict[str, Any]:
    """figures' "classes" and "confusion_matrix", from the confusion matrix's counts."""
    precision, recall, f1, support = precision_recall_f1_support(counts)
    return {
        "classes": {
            label: {
                "precision": number(precision[i]),
                "recall": number(recall[i]),
                "f1": number(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(LABELS)
        },
        "confusion_matrix": {
            truth_label: {label: int(counts[i, j]) for j, label in enumerate(LABELS)}
            for i, truth_label in enumerate(LABELS)
        },
    }


def calibration_figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """figures' "expected_calibration_error" and "calibration", over the photos not called neither."""
    judged = [outcome for outcome in outcomes if outcome.prediction.probability is not None]
    confidences = np.array([outcome.prediction.probability for outcome in judged], dtype=np.float64)
    correct = np.array([not outcome.wrong for outcome in judged], dtype=np.bool_)
    in_bin, confidence, accuracy = reliability(confidences, correct)
    edges = np.linspace(0.0, 1.0, BINS + 1)
    return {
        "expected_calibration_error": expected_calibration_error(confidences, correct),
        "calibration": [
            {
                "from": float(edges[i]),
                "to": float(edges[i + 1]),
                "photos": int(in_bin[i]),
                "confidence": number(confidence[i]),
                "accuracy": number(accuracy[i]),
            }
            for i in range(BINS)
        ],
    }

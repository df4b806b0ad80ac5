"""Predictions as CSV, one format for the CLI (`predict --csv`) and the page's download of its uploads' verdicts."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from muffin_v_chihuahua.classifier import Prediction

HEADER = ("path", "verdict", "probability", "evidence", "top1", "top1_probability", "top2", "top3", "reason")


def row(path: str, prediction: Prediction) -> list[str]:
    """One photo's row: probability empty for neither (the head cannot judge it), the top ImageNet labels."""
    first, *others = prediction.imagenet
    return [
        path,
        prediction.verdict,
        "" if prediction.probability is None else f"{prediction.probability:.6f}",
        f"{prediction.evidence:.6f}",
        first.name,
        f"{first.probability:.6f}",
        *(label.name for label in others),
        prediction.reason or "",
    ]


def text(predictions: Iterable[tuple[str, Prediction]]) -> str:
    """The whole CSV (header first) of (path or file name, prediction) pairs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    writer.writerows(row(path, prediction) for path, prediction in predictions)
    return buffer.getvalue()

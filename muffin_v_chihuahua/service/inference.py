"""Decode a request's images and predict, in a worker thread: shared by /predict and the Open Inference Protocol.

Every image is decoded (so that every bad one is named) and its bytes dropped as soon as it is, then the model
runs once for them all, timed for the metrics. Each API turns Undecodable into its own error answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from muffin_v_chihuahua import images
from muffin_v_chihuahua.classifier import Classifier, Prediction
from muffin_v_chihuahua.service.bodies import Upload


class Undecodable(Exception):
    """Images that are not photos the model can judge: (name, what is wrong) for each, in order."""

    def __init__(self, errors: list[tuple[str, images.ImageError]]):
        super().__init__("; ".join(f"{name}: {error}" for name, error in errors))
        self.errors = errors


def classify(
    classifier: Classifier, uploads: list[Upload], inferred: Callable[[float], None], heatmap: bool = False
) -> list[Prediction]:
    """The uploads' predictions (with their heatmaps if asked); `inferred` is told the seconds the model took."""
    arrays: list[np.ndarray] = []
    errors: list[tuple[str, images.ImageError]] = []
    for upload in uploads:
        try:
            arrays.append(images.decode(upload.data, classifier.input_size))
        except images.ImageError as error:
            errors.append((upload.name, error))
        upload.data = b""  # the decoded array is all that is needed from here on
    if errors:
        raise Undecodable(errors)
    started = time.perf_counter()
    predictions = classifier.predict(arrays, heatmap=heatmap)
    inferred(time.perf_counter() - started)
    return predictions

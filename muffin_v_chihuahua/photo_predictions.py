"""The page's photos, bytes -> what it shows (the picture and its prediction, or why it cannot be read): the photos
of one rerun that are new decoded and predicted together, in one batch, and each content only once.

Streamlit reruns the page on every interaction, and every upload is still there on each rerun: without this, a
click anywhere decoded and predicted every photo again. Results are kept by content (SHA-256 of the bytes, and the
model that judged them), not by file name or session: the same photo uploaded twice, or by two visitors, or a
demo photo shuffled back, is looked up, and a result can only reach a session that holds the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from muffin_v_chihuahua import images
from muffin_v_chihuahua.card import ModelCard
from muffin_v_chihuahua.classifier import Prediction
from muffin_v_chihuahua.prediction_slots import PredictionSlots

# The picture kept and shown is at most this many pixels a side: sharp in a page column (and on a phone's
# 3x screen), while an entry stays under 1.2 MB however large the upload, and the browser is sent no more.
DISPLAY_SIDE = 640
# Entries kept, the most recently used: at most ~80 MB of pictures for the whole process.
CAPACITY = 64


class PhotoClassifier(Protocol):
    """What the page asks of a model: the embedded Classifier and remote.RemoteClassifier both answer it."""

    @property
    def card(self) -> ModelCard: ...
    @property
    def engine(self) -> str: ...
    @property
    def model_sha256(self) -> str: ...
    @property
    def input_size(self) -> tuple[int, int]: ...
    def predict(self, batch: Sequence[np.ndarray], heatmap: bool = False) -> list[Prediction]: ...


@dataclass(frozen=True)
class PredictedPhoto:
    picture: Image.Image  # the photo, upright RGB, at most DISPLAY_SIDE a side
    prediction: Prediction


Result = PredictedPhoto | images.ImageError


class ResultCache:
    """Bounded: the `capacity` most recently used results; shared by the sessions' threads, so locked."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._results: OrderedDict[tuple[str, ...], Result] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._results)

    def get(self, key: tuple[str, ...]) -> Result | None:
        with self._lock:
            result = self._results.get(key)
            if result is not None:
                self._results.move_to_end(key)
            return result

    def put(self, key: tuple[str, ...], result: Result) -> None:
        with self._lock:
            self._results[key] = result
            self._results.move_to_end(key)
            while len(self._results) > self.capacity:
                self._results.popitem(last=False)


def predict_photos(
    model: PhotoClassifier,
    photos: Sequence[bytes],
    cache: ResultCache,
    slots: PredictionSlots,
    wait: float,
    heatmap: bool = False,
) -> list[Result]:
    """One result per photo, in order. The photos the cache does not hold are decoded, then predicted in one
    model.predict call (with heatmaps when asked), in one of the process's slots (prediction_slots.Busy when none
    is free within `wait` s)."""
    keys = [_key(model, photo, heatmap) for photo in photos]
    results = {key: result for key in keys if (result := cache.get(key)) is not None}
    new = {key: photo for key, photo in zip(keys, photos, strict=True) if key not in results}  # each content once
    if new:
        with slots.held(wait):
            judged = dict(zip(new, _decode_and_predict(model, list(new.values()), heatmap), strict=True))
        for key, result in judged.items():
            cache.put(key, result)
        results.update(judged)
    return [results[key] for key in keys]


def _key(model: PhotoClassifier, photo: bytes, heatmap: bool) -> tuple[str, ...]:
    # The model's file is part of the key: a front end whose service released another model judges photos anew.
    # So is the heatmap: a result without one cannot answer a page that shows them.
    return (model.engine, model.model_sha256, str(heatmap), hashlib.sha256(photo).hexdigest())


def _decode_and_predict(model: PhotoClassifier, photos: list[bytes], heatmap: bool) -> list[Result]:
    pictures: list[Image.Image | images.ImageError] = []
    arrays = []
    for photo in photos:
        try:
            picture = images.open_rgb(photo, model.input_size)
        except images.ImageError as error:
            # A new error without the traceback, whose frames hold the bytes: the cache keeps only the reason.
            pictures.append(images.ImageError(error.kind, str(error)))
            continue
        arrays.append(images.to_array(picture, model.input_size))
        picture.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))
        pictures.append(picture)
    predictions = iter(model.predict(arrays, heatmap))
    return [
        picture if isinstance(picture, images.ImageError) else PredictedPhoto(picture, next(predictions))
        for picture in pictures
    ]


@functools.cache
def shared_cache() -> ResultCache:
    """The process's results, shared by every session (a module's state: see prediction_slots.shared)."""
    return ResultCache()

"""A small stand-in for the Classifier, for the service's in-process tests (FastAPI's TestClient): the same
surface (predict, input_size, card, engine, model_version, model_sha256, neither_rule), the real model card, and
verdicts that follow from the photo's colours, so that a test knows what each answer must be without the model.

    red over green by more than MARGIN   -> muffin
    green over red by more than MARGIN   -> chihuahua
    otherwise (grey, say)                -> neither (probability None, a reason)
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from muffin_v_chihuahua.card import ModelCard
from muffin_v_chihuahua.classifier import NEITHER, Label, Prediction
from muffin_v_chihuahua.service.app import create_app
from muffin_v_chihuahua.service.settings import Settings
from tests.servers import CARD

MARGIN = 32  # of 255
HEATMAP = ((0.0, 1.0), (2.0, 3.0))
ENGINE = "onnx"


def photo(colour: tuple[int, int, int], kind: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    """An encoded picture of one colour."""
    encoded = io.BytesIO()
    Image.new("RGB", size, colour).save(encoded, format=kind)
    return encoded.getvalue()


MUFFIN, CHIHUAHUA, GREY = photo((200, 80, 40)), photo((40, 200, 80)), photo((128, 128, 128))


class StubClassifier:
    """The Classifier's surface; `batches` records the size of each batch predicted."""

    def __init__(self) -> None:
        self.card = ModelCard.from_dict(CARD, "tests.servers.CARD")
        self.input_size = (32, 24)
        self.engine = ENGINE
        self.model_version = CARD["model_version"]
        self.model_sha256 = CARD["files"][ENGINE]["sha256"]
        self.neither_rule = SimpleNamespace(threshold=CARD["neither"]["threshold"])
        self.batches: list[int] = []

    def predict(self, batch: Sequence[np.ndarray], heatmap: bool = False) -> list[Prediction]:
        self.batches.append(len(batch))
        return [self._prediction(array, heatmap) for array in batch]

    @staticmethod
    def _prediction(array: np.ndarray, heatmap: bool) -> Prediction:
        red, green = float(array[..., 0].mean()), float(array[..., 1].mean())
        labels = (Label("bagel", 0.5), Label("Chihuahua", 0.25), Label("pretzel", 0.125))
        leaning = "muffin" if red >= green else "chihuahua"
        if abs(red - green) <= MARGIN:
            prediction = Prediction(NEITHER, None, labels, 0.25, "it looks more like a bagel")
        else:
            prediction = Prediction(leaning, 0.75, labels, 0.875)
        if heatmap:
            return Prediction(**{**prediction.__dict__, "heatmap": HEATMAP, "heatmap_class": leaning})
        return prediction


@dataclass
class Gate:
    """A loader that waits until `open()`: the service's start-up, held for as long as a test needs."""

    classifier: StubClassifier
    opened: threading.Event
    error: Exception | None = None

    def __call__(self, settings: Settings) -> StubClassifier:
        self.opened.wait()
        if self.error is not None:
            raise self.error
        return self.classifier

    def open(self) -> None:
        self.opened.set()


def gate(error: Exception | None = None) -> Gate:
    """A Gate for a new StubClassifier that raises `error` once opened, if given."""
    return Gate(StubClassifier(), threading.Event(), error)


@contextlib.contextmanager
def client(
    settings: Settings | None = None, load_model: Callable[[Settings], StubClassifier] | None = None
) -> Iterator[TestClient]:
    """A TestClient of the real app around a StubClassifier (or `load_model`'s), its lifespan run; with the
    default loader it returns once the model is loaded."""
    loader = load_model or (lambda _: StubClassifier())
    app = create_app(settings or Settings(engine=ENGINE), load_model=loader)  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as test_client:
        if load_model is None:
            app.state.model.done.wait()
        yield test_client

"""The embedded model: loaded once from the package, `predict(batch) -> [Prediction]`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from muffin_v_chihuahua import engines

TOP_LABELS = 3
NEITHER = "neither"


@dataclass(frozen=True)
class Label:
    name: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    verdict: str  # one of the card's class names, or NEITHER
    probability: float  # of the verdict
    imagenet: tuple[Label, ...]  # the top ImageNet labels, most likely first
    reason: str | None = None  # why a photo is NEITHER, for a person

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Prediction:
        """The inverse of to_dict (e.g. a prediction the HTTP service sent); extra keys are ignored."""
        return cls(
            verdict=str(data["verdict"]),
            probability=float(data["probability"]),
            imagenet=tuple(Label(str(label["name"]), float(label["probability"])) for label in data["imagenet"]),
            reason=data.get("reason"),
        )


def domain_mass(imagenet: np.ndarray, class_ranges: list[list[int]]) -> np.ndarray:
    """Per photo, the ImageNet probability on the classes a muffin or chihuahua photo lands on."""
    indices = np.concatenate([np.arange(first, last + 1) for first, last in class_ranges])
    return imagenet[..., indices].sum(axis=-1)


class Classifier:
    """The model files (by default those bundled in the package), run by one engine; loading is the slow part,
    so do it once."""

    def __init__(self, engine: str = "auto", model_dir: Path | None = None):
        """model_dir: the model files (card.json and what it names); by default the ones in this package."""
        model_dir = model_dir or resources.files("muffin_v_chihuahua") / "model"
        self.card = json.loads((model_dir / "card.json").read_text())
        self._imagenet_names = json.loads((model_dir / self.card["imagenet_class_names"]).read_text())
        with resources.as_file(model_dir) as path:
            self._engine = engines.load(engine, path, self.card)
        self.input_size: tuple[int, int] = tuple(self.card["input_size"])  # (width, height)

    @property
    def engine(self) -> str:
        return self._engine.name

    def predict(self, batch: Sequence[np.ndarray]) -> list[Prediction]:
        """Model input arrays (see images.decode with `input_size`) -> one Prediction each."""
        if len(batch) == 0:
            return []
        imagenet, verdict = self._engine.run(self._stack(batch))
        return [self._prediction(i, v) for i, v in zip(imagenet, verdict, strict=True)]

    def _stack(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        expected = (self.input_size[1], self.input_size[0], 3)
        for array in batch:
            if array.shape != expected:
                raise ValueError(f"expected an array of shape {expected}, got {array.shape}")
        return np.ascontiguousarray(np.stack(batch), dtype=np.float32)

    def _prediction(self, imagenet: np.ndarray, verdict: np.ndarray) -> Prediction:
        top = np.argsort(imagenet)[::-1][:TOP_LABELS]
        labels = tuple(Label(self._imagenet_names[i], float(imagenet[i])) for i in top)
        rule = self.card["neither"]
        mass = float(domain_mass(imagenet, rule["domain_classes"]))
        if mass < rule["threshold"]:
            reason = f"looks like a {labels[0].name}, not a muffin or a chihuahua"
            return Prediction(NEITHER, 1.0 - mass, labels, reason)
        best = int(np.argmax(verdict))
        return Prediction(self.card["class_names"][best], float(verdict[best]), labels)

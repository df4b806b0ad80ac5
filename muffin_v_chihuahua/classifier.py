"""The embedded model: loaded once from the package, `predict(batch) -> [Prediction]`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from muffin_v_chihuahua import engines
from muffin_v_chihuahua.card import ModelCard, ModelFilesError, read_json, unreadable
from muffin_v_chihuahua.environment import parse_neither_threshold
from muffin_v_chihuahua.evidence import NEITHER, EvidenceRule

TOP_LABELS = 3
__all__ = ["NEITHER", "Classifier", "Label", "ModelFilesError", "Prediction"]
CARD = "card.json"


@dataclass(frozen=True)
class Label:
    name: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """One photo's verdict: the one source of a prediction's fields, which the CLI's JSON (to_dict), the service's
    PredictionOut, the /v2 outputs and the CSV columns follow (each one's test proves it)."""

    verdict: str  # one of the card's class names, or NEITHER
    probability: float | None  # the head's probability of the verdict; None for NEITHER, which it cannot judge
    imagenet: tuple[Label, ...]  # the top ImageNet labels, most likely first
    # The head's class's probability against its strongest ImageNet rival (evidence.py): the verdict's support, or
    # for NEITHER how much more the photo looks like something else.
    evidence: float
    reason: str | None = None  # why a photo is NEITHER, for a person
    # Where the model looked, when asked (predict(..., heatmap=True)): the class activation map of heatmap_class,
    # the class the head leant to (the verdict, or for NEITHER the class it was not), rows top to bottom over the
    # whole photo; each value is the head's score for the class at that cell (the class's logit is the mean of
    # the cells plus the head's bias), what pointed away from it as 0.
    heatmap: tuple[tuple[float, ...], ...] | None = None
    heatmap_class: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the heatmap keys only when it was asked for (rows as lists)."""
        data = asdict(self)
        if self.heatmap is None:
            del data["heatmap"], data["heatmap_class"]
        else:
            data["heatmap"] = [list(row) for row in self.heatmap]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """The inverse of to_dict (e.g. a prediction the HTTP service sent); extra keys are ignored."""
        return cls(
            verdict=str(data["verdict"]),
            probability=None if data["probability"] is None else float(data["probability"]),
            imagenet=tuple(Label(str(label["name"]), float(label["probability"])) for label in data["imagenet"]),
            evidence=float(data["evidence"]),
            reason=data.get("reason"),
            heatmap=None if data.get("heatmap") is None else tuple(tuple(map(float, row)) for row in data["heatmap"]),
            heatmap_class=data.get("heatmap_class"),
        )


class Classifier:
    """The model files (by default those bundled in the package), run by one engine; loading is the slow part,
    so do it once. Files that are missing, damaged or do not match the card raise ModelFilesError."""

    def __init__(
        self,
        engine: str = "auto",
        model_dir: Path | None = None,
        precision: str = "auto",
        neither_threshold: float | None = None,
    ) -> None:
        """model_dir: the model files (card.json and what it names); by default the ones in this package.
        precision: int8, float32 or auto (the fastest the card has for the engine; see engines.model_file).
        neither_threshold: the least evidence a verdict needs (evidence.py), between 0 and 1; by default the card's."""
        if neither_threshold is not None:
            neither_threshold = parse_neither_threshold(str(neither_threshold))
        with resources.as_file(model_dir or resources.files("muffin_v_chihuahua") / "model") as folder:
            card_path = folder / CARD
            self.card = card = ModelCard.from_file(card_path)  # its schema checked: every entry read below is there
            self.input_size: tuple[int, int] = card.input_size
            # Every file the card names and the runtime reads is checked before it is used.
            names_file = folder / card.imagenet_class_names
            _verified_sha256(names_file, card.imagenet_class_names_sha256)
            self._imagenet_names: list[str] = read_json(names_file)
            # The model's own version (builders.model sets it), apart from the app's: a model ships by itself.
            self.model_version = card.model_version
            references_file = folder / card.neither["references"]["file"]
            _verified_sha256(references_file, card.neither["references"]["sha256"])
            references = _read_array(references_file)
            # The "neither" rule at its operating point (the card's, unless neither_threshold moves it).
            self.neither_rule: EvidenceRule = EvidenceRule.from_card(
                card.neither, references, self._imagenet_names
            ).with_threshold(neither_threshold)
            name = engines.resolve(engine)
            self.precision, self._files_entry = engines.model_file(name, precision, card.files)
            if self._files_entry not in card.files:
                raise ModelFilesError(card_path, f"has no {'files.' + self._files_entry!r} entry")
            model_file = folder / card.files[self._files_entry].file
            # A damaged model file fails here with its name, not inside a runtime.
            self.model_sha256: str = _verified_sha256(model_file, card.files[self._files_entry].sha256)
            self._engine = engines.load(name, model_file)

    @property
    def engine(self) -> str:
        """The engine at its precision, as the card's "files" names it: onnx-int8, onnx (float32) or keras."""
        return self._files_entry

    def predict(self, batch: Sequence[npt.NDArray[np.float32]], heatmap: bool = False) -> list[Prediction]:
        """Model input arrays (see images.decode with `input_size`) -> one Prediction each, with its heatmap if
        asked (the model computes it anyway; carrying it costs a few hundred bytes a photo)."""
        if len(batch) == 0:
            return []
        outputs = self._engine.run(self._stack(batch))
        return [
            self._prediction(imagenet, verdict, logits, features, maps if heatmap else None)
            for imagenet, verdict, maps, logits, features in zip(*outputs, strict=True)
        ]

    def _stack(self, batch: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        expected = (self.input_size[1], self.input_size[0], 3)
        for array in batch:
            if array.shape != expected:
                raise ValueError(f"expected an array of shape {expected}, got {array.shape}")
        return np.ascontiguousarray(np.stack(batch), dtype=np.float32)

    def _prediction(
        self,
        imagenet: npt.NDArray[np.float32],
        verdict: npt.NDArray[np.float32],
        logits: npt.NDArray[np.float32],
        features: npt.NDArray[np.float32],
        maps: npt.NDArray[np.float32] | None,
    ) -> Prediction:
        top = np.argsort(imagenet)[::-1][:TOP_LABELS]
        labels = tuple(Label(self._imagenet_names[i], float(imagenet[i])) for i in top)
        best = int(np.argmax(verdict))
        judged = self.neither_rule.judge(logits, features, self.card.class_names[best])
        probability = None if judged.verdict == NEITHER else float(verdict[best])
        prediction = Prediction(judged.verdict, probability, labels, judged.evidence, judged.reason)
        if maps is None:
            return prediction
        # What pointed away from the class (negative) is not where the model looked for it: 0, as in Grad-CAM.
        grid = tuple(tuple(float(value) for value in row) for row in np.maximum(maps[:, :, best], 0))
        return replace(prediction, heatmap=grid, heatmap_class=self.card.class_names[best])


def _read_array(path: Path) -> npt.NDArray[np.float32]:
    """A .npy file of numbers (never pickled objects); its SHA-256 was checked against the card already."""
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except OSError as error:
        raise unreadable(path, error) from None
    except ValueError as error:
        raise ModelFilesError(path, f"is damaged: it is not a NumPy array file ({error})") from None


def _verified_sha256(path: Path, expected: str) -> str:
    """The file's SHA-256, streamed; one that is not the card's raises ModelFilesError."""
    try:
        with path.open("rb") as stream:
            actual = hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as error:
        raise unreadable(path, error) from None
    if actual != expected:
        raise ModelFilesError(
            path, f"is damaged or not the file its {CARD} describes: its SHA-256 is {actual}, the card says {expected}"
        )
    return actual

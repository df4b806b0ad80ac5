"""The model card (model/card.json): what the model is, the files it is made of and how it was built and measured.

ModelCard is written by the model builder (builders/model.py) and read by everything else: from_file checks the
schema, so a missing or mistyped entry is one ModelFilesError naming it, not a KeyError somewhere later. The
entries the app reads are typed fields; every other entry (how the model was built and measured, for people) is
kept as it is in `more`, so that to_dict() gives back the JSON the card was made from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

REPAIR = "reinstall muffin-v-chihuahua, or rebuild the model with `make model`"


class ModelFilesError(RuntimeError):
    """A model file is missing, damaged or not the one its card describes; the message names it and says what
    to do. `path` is that file."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path} {problem}: {REPAIR}")
        self.path = path


@dataclass(frozen=True)
class ModelFile:
    """A file the card names, checked by its SHA-256 before it is used."""

    file: str
    sha256: str
    bytes: int


# The entries the app reads, each with what it must be ("*": every key of a mapping); checked in this order, so
# that a missing parent is named before its children.
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "version": str,
    "model_version": str,
    "backbone": str,
    "built_at": str,
    "input_size": list,
    "class_names": list,
    "files": dict,
    "files.*": dict,
    "files.*.file": str,
    "files.*.sha256": str,
    "files.*.bytes": int,
    "imagenet_class_names": str,
    "imagenet_class_names_sha256": str,
    "neither": dict,
    "neither.threshold": (int, float),
    "neither.aliases": dict,
    "neither.similarity_scale": dict,
    "neither.dog_classes": list,
    "neither.references": dict,
    "neither.references.file": str,
    "neither.references.sha256": str,
    "evaluation": dict,
    "evaluation.accuracy": (int, float),
    "evaluation.photos": int,
    "dataset": dict,
    "dataset.sha256": str,
    "dataset.photos": int,
}


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str  # the app's version when the model was built
    model_version: str  # the model's own (its build date and a digest of its files): a model folder ships by itself
    backbone: str
    built_at: str  # ISO 8601, UTC
    input_size: tuple[int, int]  # (width, height) of the model's input
    class_names: tuple[str, ...]  # the head's classes, in the order of its outputs
    files: dict[str, ModelFile]  # the model files by engine at precision: keras, onnx, onnx-int8
    imagenet_class_names: str  # the file of the backbone's ImageNet class names
    imagenet_class_names_sha256: str
    neither: dict[str, Any]  # the "neither" rule (evidence.EvidenceRule.from_card) and what it was measured to do
    evaluation: dict[str, Any]  # the head's cross-validated figures: accuracy, photos, recall...
    dataset: dict[str, Any]  # the photos it was trained on: sha256 (of their checksums), photos, credit
    more: dict[str, Any] = field(default_factory=dict)  # every other entry, as built

    @property
    def neither_threshold(self) -> float:
        """The least evidence a verdict needs, as the build chose it."""
        return float(self.neither["threshold"])

    @classmethod
    def from_file(cls, path: Path) -> ModelCard:
        """The card in `path`; ModelFilesError if it is not JSON or an entry is missing or mistyped."""
        return cls.from_dict(read_json(path), path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> ModelCard:
        """The card `data` holds (as read from `path`, a file or a URL, which errors name), its schema checked."""
        if not isinstance(data, dict):
            raise ModelFilesError(path, "is damaged: it is not a JSON object")
        for entry, kind in SCHEMA.items():
            _check(data, entry.split("."), kind, path)
        size = data["input_size"]
        if len(size) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) for side in size):
            raise ModelFilesError(path, f"has an 'input_size' entry that is not [width, height]: {size!r}")
        if not all(isinstance(name, str) for name in data["class_names"]):
            raise ModelFilesError(
                path, f"has a 'class_names' entry that is not a list of strings: {data['class_names']!r}"
            )
        typed = {item.name for item in fields(cls)} - {"more"}
        return cls(
            **{name: data[name] for name in typed - {"input_size", "class_names", "files"}},
            input_size=(size[0], size[1]),
            class_names=tuple(data["class_names"]),
            files={
                entry: ModelFile(each["file"], each["sha256"], each["bytes"]) for entry, each in data["files"].items()
            },
            more={name: value for name, value in data.items() if name not in typed},
        )

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data: what from_dict was given, or what card.json holds."""
        typed = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "more"}
        return {
            **typed,
            "input_size": list(self.input_size),
            "class_names": list(self.class_names),
            "files": {entry: asdict(described) for entry, described in self.files.items()},
            **self.more,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def read_json(path: Path) -> Any:
    """A model JSON file (the card, the class names): ModelFilesError if it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_bytes())
    except OSError as error:
        raise unreadable(path, error) from None
    except ValueError as error:  # not JSON, or not UTF-8
        raise ModelFilesError(path, f"is damaged: it is not valid JSON ({error})") from None


def unreadable(path: Path, error: OSError) -> ModelFilesError:
    """What a model file that cannot be read is: missing, or unreadable and why."""
    return ModelFilesError(
        path, "is missing" if isinstance(error, FileNotFoundError) else f"cannot be read ({error.strerror or error})"
    )


def _check(
    entry: Any, keys: list[str], kind: type | tuple[type, ...], path: Path | str, walked: tuple[str, ...] = ()
) -> None:
    """entry[keys[0]][keys[1]]... is a `kind` ("*": every key of that mapping), else ModelFilesError naming it."""
    if not keys:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(entry, kinds) or (isinstance(entry, bool) and bool not in kinds):
            raise ModelFilesError(path, f"has a {'.'.join(walked)!r} entry that is not {_named(kind)}: {entry!r}")
        return
    key, rest = keys[0], keys[1:]
    if key == "*":
        for each in entry:
            _check(entry[each], rest, kind, path, (*walked, each))
        return
    if not isinstance(entry, dict) or key not in entry:
        raise ModelFilesError(path, f"has no {'.'.join((*walked, key))!r} entry")
    _check(entry[key], rest, kind, path, (*walked, key))


def _named(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", list: "a list", dict: "an object"}
    return "a number" if isinstance(kind, tuple) else names[kind]

"""The labelled demo photos bundled in the package (see data/SOURCE.md for their source)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from muffin_v_chihuahua.images import PHOTO_SUFFIXES


@dataclass(frozen=True)
class DemoPhoto:
    label: str  # the true class: the folder it sits in
    file: Traversable

    @property
    def name(self) -> str:
        return f"{self.label}/{self.file.name}"


def data_dir() -> Traversable:
    return resources.files("muffin_v_chihuahua") / "data"


def photos(labels: tuple[str, ...] = ("chihuahua", "muffin")) -> list[DemoPhoto]:
    """Every bundled photo, labelled, in a stable order."""
    return [
        DemoPhoto(label, file)
        for label in labels
        for file in sorted((data_dir() / label).iterdir(), key=lambda f: f.name)
        if file.name.lower().endswith(PHOTO_SUFFIXES)
    ]


def credit() -> str:
    """SOURCE.md: where the photos come from and on what terms they may be used."""
    return (data_dir() / "SOURCE.md").read_text()

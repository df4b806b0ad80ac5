"""Open a built wheel as a zip and check it carries the model its card describes and every demo photo.

python -m builders.verify_wheel dist/muffin_v_chihuahua-<version>-py3-none-any.whl
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

from builders.data import CHECKSUMS, dataset_digest, parse_checksums
from muffin_v_chihuahua.card import ModelCard, ModelFilesError

PACKAGE = "muffin_v_chihuahua"
PYPI_FILE_LIMIT = 100 * 1024 * 1024  # PyPI's default per-file upload limit


def verify(wheel: Path) -> list[str]:
    """Return the problems found (none: the wheel is complete)."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        card_member = f"{PACKAGE}/model/card.json"
        try:
            card = ModelCard.from_dict(json.loads(archive.read(card_member)), f"{wheel}:{card_member}")
        except (ValueError, ModelFilesError) as error:  # not JSON, or not the card's schema
            return [f"{card_member} is not a model card: {error}"]
        problems = []
        # Every file the card names, with the SHA-256 it states: the models (keras, onnx, onnx-int8), the ImageNet
        # class names and the "neither" rule's references.
        named = {model.file: (f"{engine} model", model.sha256) for engine, model in card.files.items()}
        named[card.imagenet_class_names] = ("ImageNet class names", card.imagenet_class_names_sha256)
        references = card.neither["references"]
        named[references["file"]] = ('"neither" references', references["sha256"])
        for file, (what, sha256) in named.items():
            member = f"{PACKAGE}/model/{file}"
            if member not in names:
                problems.append(f"{member} ({what}) is missing")
            elif _member_sha256(archive, member) != sha256:
                problems.append(f"{member} does not have the SHA-256 its card states")
        if f"{PACKAGE}/data/SOURCE.md" not in names:
            problems.append(f"{PACKAGE}/data/SOURCE.md is missing")
        photos = parse_checksums(archive.read(f"{PACKAGE}/data/{CHECKSUMS}").decode())
        if dataset_digest(photos) != card.dataset["sha256"]:
            problems.append(f"{PACKAGE}/data/{CHECKSUMS} is not the dataset the model was built on")
        for name, digest in sorted(photos.items()):
            member = f"{PACKAGE}/data/{name}"
            if member not in names:
                problems.append(f"photo {member} is missing")
            elif _member_sha256(archive, member) != digest:
                problems.append(f"photo {member} differs from the dataset")
    return problems


def _member_sha256(archive: zipfile.ZipFile, member: str) -> str:
    """Streamed from the archive: a 190 MB model is never held in memory whole."""
    with archive.open(member) as stream:
        # ZipExtFile has readinto (it is an io.BufferedIOBase); typeshed's protocol does not list it.
        return hashlib.file_digest(stream, "sha256").hexdigest()  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    wheel = Path((argv or sys.argv[1:])[0])
    problems = verify(wheel)
    for problem in problems:
        print(f"verify-wheel: {problem}", file=sys.stderr)
    size = wheel.stat().st_size
    limit = "over" if size > PYPI_FILE_LIMIT else "under"
    print(
        f"verify-wheel: {wheel.name} is {size / 1e6:.1f} MB, {limit} PyPI's default {PYPI_FILE_LIMIT / 2**20:.0f} MiB file limit"
    )
    if not problems:
        print("verify-wheel: model SHA-256 matches its card; all demo photos present")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures. The tests use the artefacts `make data model` builds inside the package."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "muffin_v_chihuahua"
SHARED_DATASET = ROOT.parent / "shared" / "datasets" / "muffin-v-chihuahua"


def pytest_sessionstart(session):
    missing = [p for p in (PACKAGE / "data" / "SHA256SUMS", PACKAGE / "model" / "card.json") if not p.exists()]
    if missing:
        pytest.exit(f"built artefacts missing ({', '.join(map(str, missing))}): run `make data model` first", 2)


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """The verified photos inside the package (a copy of the shared dataset)."""
    return PACKAGE / "data"


@pytest.fixture(scope="session")
def labelled_photos(dataset_dir) -> list[tuple[str, Path]]:
    return [(path.parent.name, path) for path in sorted(dataset_dir.glob("*/*.jpg"))]


ENGINES = ("onnx", "keras")


@pytest.fixture(scope="session", params=ENGINES)
def engine(request) -> str:
    """Each behavioural test runs on both engines."""
    return request.param


@pytest.fixture(scope="session")
def classifier(engine):
    from muffin_v_chihuahua.classifier import Classifier

    return Classifier(engine=engine)

"""Shared fixtures. The tests use the artefacts `make data model` builds inside the package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from muffin_v_chihuahua import images
from muffin_v_chihuahua.classifier import Prediction
from tests import corpus, pages

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


def imported_after(code: str, candidates: tuple[str, ...], env: dict[str, str] | None = None) -> list[str]:
    """Run `code` in a fresh interpreter; which of `candidates` it then holds in sys.modules (sorted)."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {candidates!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


ENGINES = ("onnx", "keras")
# The card's "files" entry each engine runs by default: the gated int8 model for onnx, the .h5 for keras.
DEFAULT_FILES = {"onnx": "onnx-int8", "keras": "keras"}


@pytest.fixture(scope="session", params=ENGINES)
def engine(request) -> str:
    """Each behavioural test runs on both engines."""
    return request.param


@pytest.fixture(scope="session")
def classifier(engine):
    from muffin_v_chihuahua.classifier import Classifier

    return Classifier(engine=engine)


# The wheel built from this tree and fresh virtual environments holding it (integration and browser tests).


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=out,
    )
    [built] = out.glob("muffin_v_chihuahua-*-py3-none-any.whl")
    return built


def make_venv(folder: Path, wheel: Path | None, lock: str) -> Path:
    """A fresh venv holding only the wheel (if any) and the dependencies of requirements/<lock>.txt."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = [folder / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", ROOT / "requirements" / f"{lock}.txt"], check=True)
    if wheel is not None:
        subprocess.run([*pip, "--no-deps", wheel], check=True)
    return folder


@pytest.fixture(scope="session")
def app_venv(tmp_path_factory, wheel) -> Path:
    """The plain install: ONNX Runtime, no TensorFlow."""
    return make_venv(tmp_path_factory.mktemp("venv"), wheel, "app")


@pytest.fixture(scope="session")
def keras_venv(tmp_path_factory, wheel) -> Path:
    """The install with the [keras] extra: the .h5 in TensorFlow, as the seed ran it."""
    return make_venv(tmp_path_factory.mktemp("venv-keras"), wheel, "keras")


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory) -> Path:
    """Triton's HTTP client (requirements/client.txt) alone, as on a client's machine: not our wheel."""
    return make_venv(tmp_path_factory.mktemp("venv-client"), None, "client")


@pytest.fixture(scope="session")
def playwright():
    """One Playwright for the session: its sync API runs one at a time, every browser launched from it."""
    if not Path(pages.CHROMIUM).exists():
        pytest.fail(f"{pages.CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as started:
        yield started


def chromium(playwright, extra_args: list[str]):
    """Debian's Chromium, headless, driven by Playwright (whose own browser download is not used)."""
    launched = playwright.chromium.launch(
        executable_path=pages.CHROMIUM, headless=True, args=[*pages.CHROMIUM_ARGS, *extra_args]
    )
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def browser(playwright):
    yield from chromium(playwright, [])


@pytest.fixture(scope="session")
def camera_browser(playwright, tmp_path_factory):
    """Chromium whose camera is a fake one filming a dataset photo (chihuahua/1.jpg), made into a video here."""
    video = pages.fake_camera_video(corpus.DATASET_PHOTO, tmp_path_factory.mktemp("camera") / "chihuahua.y4m")
    yield from chromium(playwright, pages.camera_args(video))


def expected_prediction(classifier, path: Path) -> Prediction:
    [prediction] = classifier.predict([images.decode(path.read_bytes(), classifier.input_size)])
    return prediction


def console_script(*args: str | Path, **options) -> subprocess.Popen:
    """The real console script in a fresh process, its output read through pipes (unless `options` say otherwise)."""
    command = [sys.executable, "-m", "muffin_v_chihuahua", *map(str, args)]
    return subprocess.Popen(
        command, cwd=ROOT, **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **options}
    )


def skipped_line(path: Path) -> str:
    with pytest.raises(images.ImageError) as refused:
        images.decode(path.read_bytes(), (224, 224))
    return f"muffin-v-chihuahua: skipped {path}: {refused.value}"

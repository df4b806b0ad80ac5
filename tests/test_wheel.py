"""The wheel, built from this tree and installed into a fresh virtual environment outside it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.servers import clean_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def outside(tmp_path_factory, dataset_dir) -> Path:
    """A working folder away from the source tree, with a copy of the photos."""
    folder = tmp_path_factory.mktemp("outside")
    shutil.copytree(dataset_dir, folder / "photos", ignore=shutil.ignore_patterns("*.md", "SHA256SUMS"))
    return folder


def test_the_installed_app_is_not_the_source_tree(app_venv, outside):
    where = subprocess.run(
        [app_venv / "bin" / "python", "-c", "import muffin_v_chihuahua; print(muffin_v_chihuahua.__file__)"],
        cwd=outside,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(app_venv) in where and str(ROOT) not in where


def installed_predict(venv: Path, folder: Path, *options: str) -> dict[str, str]:
    """{photo path: verdict} from `muffin-v-chihuahua predict --json` run in venv."""
    result = subprocess.run(
        [venv / "bin" / "muffin-v-chihuahua", "predict", "--json", *options, "photos"],
        cwd=folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return {p["path"]: p["verdict"] for p in map(json.loads, result.stdout.splitlines())}


def test_the_plain_install_has_no_tensorflow_and_says_how_to_get_the_keras_engine(app_venv, outside):
    probe = "import importlib.util as u; print(u.find_spec('tensorflow'), u.find_spec('keras'))"
    found = subprocess.run([app_venv / "bin" / "python", "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["None", "None"]
    refused = subprocess.run(
        [app_venv / "bin" / "muffin-v-chihuahua", "predict", "--engine", "keras", "photos"],
        cwd=outside,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "muffin-v-chihuahua[keras]" in refused.stderr


def test_installed_predict_gives_the_verdicts_of_this_tree_on_both_engines(app_venv, keras_venv, outside):
    """The wheel carries the very model built here: its CLI, on either engine, says what this tree's Classifier
    says of every photo (how good those verdicts are is the model card's cross-validation, see test_classifier)."""
    from muffin_v_chihuahua import images
    from muffin_v_chihuahua.classifier import Classifier

    verdicts = installed_predict(app_venv, outside)
    assert len(verdicts) == 120
    here = Classifier("onnx")
    paths = sorted(verdicts)
    expected = here.predict([images.decode((outside / path).read_bytes(), here.input_size) for path in paths])
    assert [verdicts[path] for path in paths] == [prediction.verdict for prediction in expected]
    assert installed_predict(keras_venv, outside, "--engine", "keras") == verdicts


@pytest.mark.parametrize(
    "edited",
    [
        "muffin_v_chihuahua/service/app.py",
        "muffin_v_chihuahua/model/muffin_v_chihuahua.onnx",
        "muffin_v_chihuahua/data/SOURCE.md",
    ],
)
def test_an_edit_to_any_packaged_file_makes_a_new_wheel_and_nothing_else_does(edited):
    """make's view, asked without building: the wheel `make test` just built is up to date, and stale once a file it
    packs is newer (code in a subpackage, a model file, a file of the photos' folder), not when the README is."""
    wheel = next((ROOT / "dist").glob("muffin_v_chihuahua-*.whl")).relative_to(ROOT)

    def rebuilds(*what_if: str) -> bool:
        command = ["make", "--dry-run", *(f"--what-if={path}" for path in what_if), str(wheel)]
        return "pip wheel" in subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    assert not rebuilds() and not rebuilds("README.md")
    assert rebuilds(edited)

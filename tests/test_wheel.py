"""The wheel, built from this tree and installed into a fresh virtual environment outside it."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.servers import clean_env, free_port, running, wait_for

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


def test_installed_predict_is_accurate_and_both_engines_agree(app_venv, keras_venv, outside):
    verdicts = installed_predict(app_venv, outside)
    assert len(verdicts) == 120
    correct = sum(Path(path).parent.name == verdict for path, verdict in verdicts.items())
    assert correct / len(verdicts) >= 0.95
    assert installed_predict(keras_venv, outside, "--engine", "keras") == verdicts


def test_installed_run_demo_serves_a_healthy_page(app_venv, outside):
    port = free_port()
    command = [
        app_venv / "bin" / "muffin-v-chihuahua",
        "run-demo",
        "--server.port",
        port,
        "--server.address",
        "127.0.0.1",
    ]
    with running(command, outside / "run-demo.log", cwd=outside) as server:
        seconds = wait_for(f"http://127.0.0.1:{port}/_stcore/health", process=server)
        print(f"run-demo healthy after {seconds:.1f} s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()

"""The wheel, built from this tree and installed into a fresh virtual environment outside it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float = 120) -> float:
    """Seconds until url answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True, cwd=out,
    )
    [built] = out.glob("muffin_v_chihuahua-*-py3-none-any.whl")
    return built


def make_venv(folder: Path, requirement: str) -> Path:
    """A fresh venv holding only the wheel (with extras, if asked) and its dependencies."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run(
        [folder / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", ROOT / "requirements" / "constraints.txt", requirement],
        check=True,
    )
    return folder


@pytest.fixture(scope="module")
def app_venv(tmp_path_factory, wheel) -> Path:
    """The plain install: ONNX Runtime, no TensorFlow."""
    return make_venv(tmp_path_factory.mktemp("venv"), str(wheel))


@pytest.fixture(scope="module")
def keras_venv(tmp_path_factory, wheel) -> Path:
    """The install with the [keras] extra: the .h5 in TensorFlow, as the seed ran it."""
    return make_venv(tmp_path_factory.mktemp("venv-keras"), f"{wheel}[keras]")


@pytest.fixture(scope="module")
def outside(tmp_path_factory, dataset_dir) -> Path:
    """A working folder away from the source tree, with a copy of the photos."""
    folder = tmp_path_factory.mktemp("outside")
    shutil.copytree(dataset_dir, folder / "photos", ignore=shutil.ignore_patterns("*.md", "SHA256SUMS"))
    return folder


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_installed_app_is_not_the_source_tree(app_venv, outside):
    where = subprocess.run(
        [app_venv / "bin" / "python", "-c", "import muffin_v_chihuahua; print(muffin_v_chihuahua.__file__)"],
        cwd=outside, env=clean_env(), capture_output=True, text=True, check=True,
    ).stdout
    assert str(app_venv) in where and str(ROOT) not in where


def installed_predict(venv: Path, folder: Path, *options: str) -> dict[str, str]:
    """{photo path: verdict} from `muffin-v-chihuahua predict --json` run in venv."""
    result = subprocess.run(
        [venv / "bin" / "muffin-v-chihuahua", "predict", "--json", *options, "photos"],
        cwd=folder, env=clean_env(), capture_output=True, text=True, check=True,
    )
    return {p["path"]: p["verdict"] for p in map(json.loads, result.stdout.splitlines())}


def test_the_plain_install_has_no_tensorflow_and_says_how_to_get_the_keras_engine(app_venv, outside):
    probe = "import importlib.util as u; print(u.find_spec('tensorflow'), u.find_spec('keras'))"
    found = subprocess.run([app_venv / "bin" / "python", "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["None", "None"]
    refused = subprocess.run(
        [app_venv / "bin" / "muffin-v-chihuahua", "predict", "--engine", "keras", "photos"],
        cwd=outside, env=clean_env(), capture_output=True, text=True,
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
    server = subprocess.Popen(
        [app_venv / "bin" / "muffin-v-chihuahua", "run-demo", "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=outside, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        seconds = wait_for(f"http://127.0.0.1:{port}/_stcore/health")
        print(f"run-demo healthy after {seconds:.1f} s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)

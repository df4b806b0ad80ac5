"""`batch` on Ray against `predict` on the same 2,000 photos, on this machine -> a block of docs/scaling.md.

    python -m benchmarks.batch --out docs/scaling.md

The photos: the dataset's 120, re-encoded and augmented (flipped, cropped, turned, shrunk, re-encoded at other
qualities) up to 2,000 distinct files. `predict --json` classifies them in one process; `batch` classifies them
on a Ray cluster of this machine's CPUs started beforehand (`ray start --head`, timed: the cluster's fixed
start-up), so that the photos/s compare the work alone. Peak memory: the predict process's, and the sum of the
cluster's processes' resident memory sampled during batch (and at rest before it).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps

from benchmarks import write_block
from muffin_v_chihuahua import cpus
from muffin_v_chihuahua.ray_batch import LOOPBACK

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "muffin_v_chihuahua" / "data"
PHOTOS = 2000
ROUNDS = 3  # predict and batch in turns, round after round: the medians compare them under the same load
SMALL = 64  # one batch of photos: batch's time on them is its fixed cost per job, near enough
BEGIN, END = "<!-- MEASURED: make bench-batch -->", "<!-- /MEASURED -->"
VARIANTS: list[Callable[[Image.Image], Image.Image]] = [
    lambda image: image,
    ImageOps.mirror,
    lambda image: image.rotate(8, expand=True, fillcolor=(255, 255, 255)),
    lambda image: image.rotate(-8, expand=True, fillcolor=(255, 255, 255)),
    lambda image: image.crop((image.width // 10, image.height // 10, image.width, image.height)),
    lambda image: image.crop((0, 0, image.width * 9 // 10, image.height * 9 // 10)),
    lambda image: image.resize((image.width * 2, image.height * 2)),
    lambda image: image.resize((max(image.width // 2, 1), max(image.height // 2, 1))),
    lambda image: ImageOps.grayscale(image).convert("RGB"),
    lambda image: ImageOps.autocontrast(image),
    lambda image: ImageOps.mirror(image.rotate(5, expand=True, fillcolor=(0, 0, 0))),
    lambda image: ImageOps.expand(image, border=image.width // 8, fill=(128, 128, 128)),
    lambda image: ImageOps.posterize(image, 5),
    lambda image: ImageOps.equalize(image),
    lambda image: ImageOps.mirror(ImageOps.autocontrast(image)),
    lambda image: image.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    lambda image: ImageOps.solarize(image, 240),
]
QUALITIES = (95, 85, 75)


def make_photos(folder: Path, count: int) -> int:
    """count distinct JPEGs from the dataset's photos: each variant at one of QUALITIES; returns their bytes."""
    sources = sorted(DATA.glob("*/*.jpg"))
    total = 0
    for index in range(count):
        source, variant = sources[index % len(sources)], VARIANTS[index // len(sources)]
        with Image.open(source) as image:
            buffer = io.BytesIO()
            variant(ImageOps.exif_transpose(image).convert("RGB")).save(
                buffer, format="JPEG", quality=QUALITIES[index % len(QUALITIES)]
            )
        (folder / source.parent.name).mkdir(exist_ok=True)
        (folder / source.parent.name / f"{index:04d}-{source.stem}.jpg").write_bytes(buffer.getvalue())
        total += len(buffer.getvalue())
    return total


def rss_mb(marker: str) -> float:
    """The resident memory of every process whose command line names marker (the cluster's temp folder), in MB."""
    total = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                status = (entry / "status").read_text()
                total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) if "VmRSS" in status else 0  # type: ignore[union-attr]
        except OSError:
            continue
    return total / 1024


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run command to its end: (seconds, its peak resident memory in MB); it must succeed."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        assert process.returncode == 0, output.read().decode(errors="replace")[-3000:]
    return seconds, usage.ru_maxrss / 1024


def measure(folder: Path, python: str) -> dict:
    env = {**os.environ, **LOOPBACK, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("PYTHONPATH", None)
    cli = [python, "-m", "muffin_v_chihuahua"]
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray = str(Path(python).with_name("ray"))
    port = str(20000 + secrets.randbelow(20000))
    address = f"127.0.0.1:{port}"
    started = time.perf_counter()
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         f"--num-cpus={cpus.usable()}", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while subprocess.run([ray, "status", f"--address={address}"], env=env, capture_output=True).returncode:
            assert head.poll() is None, "the Ray head did not start"
            time.sleep(0.2)
        startup = time.perf_counter() - started
        time.sleep(5)  # at rest: the processes a head keeps, once they have settled
        at_rest = rss_mb(temp)
        peak, done = [at_rest], threading.Event()

        def sample() -> None:
            while not done.wait(0.25):
                peak.append(rss_mb(temp))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        runs: dict[str, list[tuple[float, float]]] = {"predict": [], "batch": [], "batch_small": []}
        small = folder.parent / "small"
        small.mkdir(exist_ok=True)
        for photo in sorted(folder.rglob("*.jpg"))[:SMALL]:
            shutil.copy(photo, small / photo.name)
        try:
            for round_number in range(ROUNDS):
                out = Path(temp) / f"out-{round_number}"
                runs["predict"].append(timed([*cli, "predict", "--json", "--engine", "onnx", str(folder)], env))
                command = [*cli, "batch", str(folder), "--output", str(out), f"--ray-address={address}"]
                runs["batch"].append(timed(command, env))
                command = [*cli, "batch", str(small), "--output", f"{out}-small", f"--ray-address={address}"]
                runs["batch_small"].append(timed(command, env))
        finally:
            done.set()
            sampler.join()
        parts = len(list(out.glob("*.parquet")))
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        subprocess.run(["pkill", "-9", "-f", temp])
        shutil.rmtree(temp, ignore_errors=True)
    median = {name: sorted(times)[len(times) // 2] for name, times in runs.items()}
    return {
        "predict_seconds": median["predict"][0],
        "predict_peak_mb": max(peak for _, peak in runs["predict"]),
        "batch_seconds": median["batch"][0],
        "batch_small_seconds": median["batch_small"][0],
        "seconds": {name: [round(seconds, 2) for seconds, _ in times] for name, times in runs.items()},
        "cluster_startup_seconds": startup,
        "cluster_at_rest_mb": at_rest,
        "cluster_peak_mb": max(peak),
        "driver_peak_mb": max(peak for _, peak in runs["batch"]),
        "parts": parts,
    }


def render(measured: dict, photos: int, megabytes: float, loads: tuple) -> str:
    photos_per_second = {name: photos / measured[f"{name}_seconds"] for name in ("predict", "batch")}
    ratio = photos_per_second["batch"] / photos_per_second["predict"]
    fixed = measured["batch_small_seconds"]
    steady = (photos - SMALL) / (measured["batch_seconds"] - fixed)  # photos/s once the job runs
    return "\n".join(
        [
            BEGIN,
            f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {cpus.usable()} CPUs, {ROUNDS} rounds "
            f"of each in turns (the medians; every run's seconds: {measured['seconds']}), "
            f"{photos:,} photos ({megabytes:.0f} MB of JPEG: the dataset re-encoded and augmented), the onnx "
            f"engine's default model (load average before: {loads}).",
            "",
            "| | seconds | photos/s | photos/s per CPU | peak resident memory |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| `predict --json`, one process | {measured['predict_seconds']:.1f} | {photos_per_second['predict']:.1f} "
            f"| {photos_per_second['predict'] / cpus.usable():.1f} | {measured['predict_peak_mb']:.0f} MB |",
            f"| `batch` on a running Ray cluster | {measured['batch_seconds']:.1f} | {photos_per_second['batch']:.1f} "
            f"| {photos_per_second['batch'] / cpus.usable():.1f} | {measured['cluster_peak_mb']:.0f} MB (cluster) "
            f"+ {measured['driver_peak_mb']:.0f} MB (driver) |",
            "",
            f"`batch` reaches **{ratio:.2f}×** the photos/s of `predict` (target ≥ 0.8×), its {measured['parts']} "
            f"Parquet parts written. Of its {measured['batch_seconds']:.1f} s, **{fixed:.1f} s** are a fixed cost per job "
            f"(its time on {SMALL} photos: the driver joins the cluster, Ray Data plans, the actors start and load the "
            f"model, the parts are written); past it the job classifies **{steady:.1f} photos/s**, "
            f"**{steady / photos_per_second['predict']:.2f}×** `predict`'s, {steady / cpus.usable():.1f} per CPU. "
            "The cluster's own fixed cost, apart: `ray start --head` to a cluster that answers "
            f"`ray status` in **{measured['cluster_startup_seconds']:.1f} s**, and "
            f"**{measured['cluster_at_rest_mb']:.0f} MB** resident at rest.",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.md")
    parser.add_argument("--python", default=sys.executable, help="the Python whose environment has the [ray] extra")
    parser.add_argument("--photos", type=int, default=PHOTOS, help=f"how many (default {PHOTOS}; fewer: a quick check)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photos"
        folder.mkdir()
        megabytes = make_photos(folder, args.photos) / 1e6
        loads = tuple(round(load, 1) for load in os.getloadavg())
        measured = measure(folder, args.python)
    block = render(measured, args.photos, megabytes, loads)
    write_block(args.out, BEGIN, END, block)
    print(block)
    print(json.dumps(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The service under load: 16 concurrent clients for 30 s on loopback, while a health check keeps asking.

`python -m muffin_v_chihuahua serve` (onnx engine) in its own process; each client POSTs one dataset
photo per request as a multipart file, over its own keep-alive connection, for a fixed duration and up to
a cap on requests. A separate loop asks the health check (a new connection each time, as an orchestrator
would) every half second. Asserted: correctness only (every answer 200 with a verdict for its photo, and
the health check answered 200 throughout). The figures are printed and written to
test-artifacts/load.json; no timing is asserted.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import ROOT
from tests.servers import ServiceProcess, get, multipart

pytestmark = pytest.mark.load

CLIENTS = 16
DURATION_SECONDS = 30.0
MAX_REQUESTS = 20_000  # a bound, should the service be far faster than expected
REQUEST_TIMEOUT_SECONDS = 60.0
HEALTH_INTERVAL_SECONDS = 0.5
HEALTH_TIMEOUT_SECONDS = 10.0
MIN_HEALTH_CHECKS = 10
VERDICTS = {"muffin", "chihuahua", "neither"}
ARTIFACT = ROOT / "test-artifacts" / "load.json"
CURL = shutil.which("curl")


@dataclass
class Outcome:
    seconds: float
    error: str | None  # None: 200 with a verdict for the photo sent


class Budget:
    """Requests may start until the deadline or until MAX_REQUESTS have started, whichever comes first."""

    def __init__(self, deadline: float, cap: int):
        self.deadline, self.cap, self.started = deadline, cap, 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if time.monotonic() >= self.deadline or self.started >= self.cap:
                return False
            self.started += 1
            return True


def client(
    number: int, port: int, bodies: list[tuple[str, bytes, dict]], budget: Budget, go: threading.Barrier
) -> list[Outcome]:
    """One client: a keep-alive connection, one photo per request, the next photo each time."""
    outcomes = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
    go.wait()
    index = number
    while budget.take():
        name, body, headers = bodies[index % len(bodies)]
        index += CLIENTS
        started = time.monotonic()
        try:
            connection.request("POST", "/predict", body, headers)
            answer = connection.getresponse()
            status, payload = answer.status, answer.read()
            error = None
            if status != 200:
                error = f"{name}: {status} {payload[:300]!r}"
            else:
                [prediction] = json.loads(payload)["predictions"]
                if prediction["file"] != name or prediction["verdict"] not in VERDICTS:
                    error = f"{name}: unexpected answer {prediction}"
        except Exception as failure:  # a reset, a timeout, a malformed answer: an error, then a new connection
            error = f"{name}: {type(failure).__name__}: {failure}"
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_SECONDS)
        outcomes.append(Outcome(time.monotonic() - started, error))
    connection.close()
    return outcomes


def health_checks(url: str, done: threading.Event, checks: list[tuple[int | str, float]]) -> None:
    while not done.is_set():
        started = time.monotonic()
        try:
            status = get(url + "/", timeout=HEALTH_TIMEOUT_SECONDS)[0]
        except Exception as failure:
            status = f"{type(failure).__name__}: {failure}"
        checks.append((status, time.monotonic() - started))
        done.wait(HEALTH_INTERVAL_SECONDS)


def milliseconds(values, percentile: float) -> float:
    return round(float(np.percentile(values, percentile)) * 1000, 1)


def test_sixteen_clients_for_thirty_seconds_get_verdicts_while_the_health_check_answers(
    labelled_photos, tmp_path, capsys
):
    bodies = []
    for _, path in labelled_photos:
        body, headers = multipart([("files", path.name, "image/jpeg", path.read_bytes())])
        bodies.append((path.name, body, headers))

    with ServiceProcess("onnx", log=tmp_path / "service.log") as service:
        results: list[list[Outcome]] = [[] for _ in range(CLIENTS)]
        checks: list[tuple[int | str, float]] = []
        done = threading.Event()
        go = threading.Barrier(CLIENTS + 1)
        budget = Budget(float("inf"), MAX_REQUESTS)

        def run(number: int) -> None:
            results[number] = client(number, service.port, bodies, budget, go)

        threads = [threading.Thread(target=run, args=(number,), name=f"client-{number}") for number in range(CLIENTS)]
        for thread in threads:
            thread.start()
        watcher = threading.Thread(target=health_checks, args=(service.url, done, checks), name="health")
        started = time.monotonic()
        budget.deadline = started + DURATION_SECONDS
        watcher.start()
        go.wait()
        try:
            for thread in threads:
                thread.join(DURATION_SECONDS + REQUEST_TIMEOUT_SECONDS + 30)
        finally:
            elapsed = time.monotonic() - started
            done.set()
            watcher.join(HEALTH_TIMEOUT_SECONDS + 5)
        assert not any(thread.is_alive() for thread in threads), "a client is still waiting for an answer"
        log = service.log()

    outcomes = [outcome for per_client in results for outcome in per_client]
    errors = [outcome.error for outcome in outcomes if outcome.error]
    latencies = [outcome.seconds for outcome in outcomes]
    health_latencies = [seconds for _, seconds in checks]
    figures = {
        "engine": "onnx",
        "clients": CLIENTS,
        "duration_seconds": DURATION_SECONDS,
        "max_requests": MAX_REQUESTS,
        "cpus": len(os.sched_getaffinity(0)),
        "requests": len(outcomes),
        "errors": len(errors),
        "elapsed_seconds": round(elapsed, 2),
        "requests_per_second": round(len(outcomes) / elapsed, 1),
        "latency_ms": {
            "p50": milliseconds(latencies, 50),
            "p95": milliseconds(latencies, 95),
            "p99": milliseconds(latencies, 99),
            "max": milliseconds(latencies, 100),
        },
        "health_checks": len(checks),
        "health_checks_200": sum(status == 200 for status, _ in checks),
        "health_latency_ms": {"p50": milliseconds(health_latencies, 50), "max": milliseconds(health_latencies, 100)},
    }
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(figures, indent=2) + "\n")
    with capsys.disabled():
        latency, health = figures["latency_ms"], figures["health_latency_ms"]
        print(
            f"\nload: {CLIENTS} clients, {figures['elapsed_seconds']} s: {figures['requests']} requests "
            f"({figures['requests_per_second']} req/s), {figures['errors']} errors; latency p50 {latency['p50']} ms, "
            f"p95 {latency['p95']} ms, p99 {latency['p99']} ms, max {latency['max']} ms; health checks "
            f"{figures['health_checks_200']}/{figures['health_checks']} 200, max {health['max']} ms -> {ARTIFACT}"
        )

    assert outcomes and not errors, f"{len(errors)} of {len(outcomes)} requests failed, e.g. {errors[:5]}"
    assert len(checks) >= MIN_HEALTH_CHECKS and all(status == 200 for status, _ in checks), checks
    assert "Traceback" not in log and " 500 " not in log


# ----- memory under pressure: the largest requests, more at once than the workers can take ----------------

HEAVY_CLIENTS = 24
HEAVY_FILES = 16  # the service's default max_files
HEAVY_FILE_MB = 9.0  # just under the default 10 MB per file
HEAVY_TIMEOUT_SECONDS = 120.0
MAX_PEAK_MIB = 1024
# The clients of the standard libraries, a third each. urllib and requests send the whole body before they read
# (urllib with `Connection: close`, requests keep-alive); curl asks first (`Expect: 100-continue`).
CLIENT_KINDS = ("urllib", "requests", "curl")
ROUNDS = 3  # the same pressure again on the same service: no round may leave a reset behind


def noise_jpeg(megabytes: float) -> bytes:
    """A random-noise JPEG of about `megabytes` (noise does not compress), a few megapixels: far under the
    decoder's 40 MP limit, so the service decodes it like any photo."""
    rng = np.random.default_rng(14)
    side = 1000
    for _ in range(3):  # noise at quality 95 takes a nearly constant number of bytes per pixel
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=95)
        side = int(side * (megabytes * 1024 * 1024 / len(buffer.getvalue())) ** 0.5)
    return buffer.getvalue()


def peak_resident_mib(pid: int) -> float:
    """VmHWM (the peak resident set) of the process `pid`, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024  # kB


def send(kind: str, url: str, body: bytes, headers: dict, body_file: Path | None) -> tuple[int, bytes, str | None]:
    """POST `body` to url with the client `kind`: (status, answer body, Retry-After); a connection error raises."""
    if kind == "urllib":
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, body, headers), timeout=HEAVY_TIMEOUT_SECONDS
            ) as got:
                return got.status, got.read(), got.headers.get("Retry-After")
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read(), refused.headers.get("Retry-After")
    if kind == "requests":
        answer = requests.post(url, data=body, headers=headers, timeout=HEAVY_TIMEOUT_SECONDS)
        return answer.status_code, answer.content, answer.headers.get("Retry-After")
    assert kind == "curl" and body_file is not None, kind
    if CURL is None:
        pytest.fail("curl is not installed (Debian: apt-get install curl)")
    options = [item for name, value in headers.items() for item in ("--header", f"{name}: {value}")]
    result = subprocess.run(
        [
            CURL,
            "--silent",
            "--show-error",
            "--max-time",
            str(HEAVY_TIMEOUT_SECONDS),
            *options,
            "--data-binary",
            f"@{body_file}",
            "--write-out",
            "\n%{http_code} %header{retry-after}",
            url,
        ],
        capture_output=True,
        timeout=HEAVY_TIMEOUT_SECONDS + 30,
    )
    if result.returncode != 0:
        raise ConnectionError(f"curl exit {result.returncode}: {result.stderr.decode(errors='replace').strip()}")
    payload, _, written = result.stdout.rpartition(b"\n")
    status, _, retry_after = written.decode().partition(" ")
    return int(status), payload, retry_after or None


def heavy_client(
    port: int,
    body: bytes,
    headers: dict,
    names: list[str],
    go: threading.Barrier,
    kind: str = "urllib",
    body_file: Path | None = None,
) -> dict[str, Any]:
    """One multipart request of HEAVY_FILES large images by a client of `kind` (CLIENT_KINDS; curl sends
    `body_file`, the same bytes); what came back: 200 with a verdict per file, 503 with Retry-After, or an error."""
    go.wait()
    started = time.monotonic()
    try:
        status, payload, retry_after = send(kind, f"http://127.0.0.1:{port}/predict", body, headers, body_file)
    except Exception as failure:  # a reset, a timeout: what this test exists to rule out
        return {"outcome": "error", "error": f"{kind}: {type(failure).__name__}: {failure}"}
    seconds = time.monotonic() - started
    try:
        parsed = json.loads(payload)
    except ValueError:
        return {"outcome": "error", "error": f"{kind}: {status}, not JSON: {payload[:300]!r}"}
    if status == 200:
        got = [(prediction["file"], prediction["verdict"] in VERDICTS) for prediction in parsed["predictions"]]
        if got == [(name, True) for name in names]:
            return {"outcome": 200, "seconds": seconds}
    elif status == 503 and retry_after and retry_after.isdigit() and parsed.get("detail") and parsed.get("errors"):
        return {"outcome": 503, "seconds": seconds}
    return {"outcome": "error", "error": f"{kind}: {status} Retry-After={retry_after}: {payload[:300]!r}"}


@pytest.fixture(scope="module")
def heavy_request(tmp_path_factory) -> tuple[bytes, dict, list[str], Path]:
    """The largest request: HEAVY_FILES noise JPEGs of HEAVY_FILE_MB as multipart files (body, headers, the
    files' names), and the body in a file for curl."""
    image = noise_jpeg(HEAVY_FILE_MB)
    assert 0.95 * HEAVY_FILE_MB < len(image) / (1024 * 1024) <= HEAVY_FILE_MB * 1.05
    names = [f"noise-{index}.jpg" for index in range(HEAVY_FILES)]
    body, headers = multipart([("files", name, "image/jpeg", image) for name in names])
    body_file = tmp_path_factory.mktemp("heavy") / "body.multipart"
    body_file.write_bytes(body)
    return body, headers, names, body_file


@pytest.fixture(scope="module")
def pressed_service(tmp_path_factory):
    """One service for every round, so that a round starts where the one before left it; and its idle peak (MiB)."""
    with ServiceProcess("onnx", log=tmp_path_factory.mktemp("pressed") / "service.log") as service:
        pid = service.process.pid
        assert "muffin_v_chihuahua" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()  # python itself, no shell
        yield service, peak_resident_mib(pid)


@pytest.mark.parametrize("round_number", range(1, ROUNDS + 1))
def test_the_largest_requests_at_once_get_verdicts_or_503_and_memory_stays_bounded(
    pressed_service, heavy_request, round_number, capsys
):
    """HEAVY_CLIENTS at once, of each kind in turn, each sending HEAVY_FILES images of HEAVY_FILE_MB: each reads
    200 with its verdicts or 503 with Retry-After, never a connection error; the peak resident memory (over
    every round so far) stays under MAX_PEAK_MIB. Figures: test-artifacts/load-memory.json (the last round)."""
    body, headers, names, body_file = heavy_request
    service, idle_mib = pressed_service
    kinds = [CLIENT_KINDS[number % len(CLIENT_KINDS)] for number in range(HEAVY_CLIENTS)]
    results: list[dict[str, Any]] = [{} for _ in range(HEAVY_CLIENTS)]
    checks: list[tuple[int | str, float]] = []
    done = threading.Event()
    go = threading.Barrier(HEAVY_CLIENTS)
    log_start = len(service.log())

    def run(number: int) -> None:
        results[number] = heavy_client(service.port, body, headers, names, go, kinds[number], body_file)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(HEAVY_CLIENTS)]
    watcher = threading.Thread(target=health_checks, args=(service.url, done, checks), name="health")
    watcher.start()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(HEAVY_TIMEOUT_SECONDS + 60)
    finally:
        elapsed = time.monotonic() - started
        done.set()
        watcher.join(HEALTH_TIMEOUT_SECONDS + 5)
    assert not any(thread.is_alive() for thread in threads), "a client is still waiting for an answer"
    peak_mib = peak_resident_mib(service.process.pid)
    log = service.log()[log_start:]

    outcomes = [result["outcome"] for result in results]
    errors = [result["error"] for result in results if result["outcome"] == "error"]
    figures = {
        "round": round_number,
        "clients": HEAVY_CLIENTS,
        "files_per_request": HEAVY_FILES,
        "file_mb": round(len(body) / HEAVY_FILES / (1024 * 1024), 2),
        "answers_200": outcomes.count(200),
        "answers_503": outcomes.count(503),
        "errors": len(errors),
        "by_client": {
            kind: dict(Counter(str(result["outcome"]) for result, of in zip(results, kinds, strict=True) if of == kind))
            for kind in CLIENT_KINDS
        },
        "elapsed_seconds": round(elapsed, 1),
        "peak_resident_mib": round(peak_mib),
        "idle_resident_mib": round(idle_mib),
        "health_checks": len(checks),
        "health_checks_200": sum(status == 200 for status, _ in checks),
        "health_max_ms": milliseconds([seconds for _, seconds in checks] or [0], 100),
    }
    ARTIFACT.parent.mkdir(exist_ok=True)
    (ARTIFACT.parent / "load-memory.json").write_text(json.dumps(figures, indent=2) + "\n")
    with capsys.disabled():
        print(f"\nload-memory: {figures}")

    assert not errors, f"{len(errors)} of {HEAVY_CLIENTS} clients got no proper answer, e.g. {errors[:3]}"
    assert outcomes.count(200) >= 1, figures
    assert checks and all(status == 200 for status, _ in checks), checks
    assert peak_mib <= MAX_PEAK_MIB, figures
    assert "Traceback" not in log and " 500 " not in log

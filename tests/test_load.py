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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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


def heavy_client(port: int, body: bytes, headers: dict, names: list[str], go: threading.Barrier) -> dict[str, Any]:
    """One multipart request of HEAVY_FILES large images, sent whole before the answer is read (as requests
    and httpx do); what came back: 200 with a verdict per file, 503 with Retry-After, or an error."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HEAVY_TIMEOUT_SECONDS)
    go.wait()
    started = time.monotonic()
    try:
        connection.request("POST", "/predict", body, headers)
        answer = connection.getresponse()
        status, payload, retry_after = answer.status, answer.read(), answer.getheader("Retry-After")
    except Exception as failure:
        return {"outcome": "error", "error": f"{type(failure).__name__}: {failure}"}
    finally:
        connection.close()
    seconds = time.monotonic() - started
    try:
        parsed = json.loads(payload)
    except ValueError:
        return {"outcome": "error", "error": f"{status}, not JSON: {payload[:300]!r}"}
    if status == 200:
        got = [(prediction["file"], prediction["verdict"] in VERDICTS) for prediction in parsed["predictions"]]
        if got == [(name, True) for name in names]:
            return {"outcome": 200, "seconds": seconds}
    elif status == 503 and retry_after and retry_after.isdigit() and parsed.get("detail") and parsed.get("errors"):
        return {"outcome": 503, "seconds": seconds}
    return {"outcome": "error", "error": f"{status} Retry-After={retry_after}: {payload[:300]!r}"}


def test_the_largest_requests_at_once_get_verdicts_or_503_and_memory_stays_bounded(tmp_path, capsys):
    image = noise_jpeg(HEAVY_FILE_MB)
    assert 0.95 * HEAVY_FILE_MB < len(image) / (1024 * 1024) <= HEAVY_FILE_MB * 1.05
    names = [f"noise-{index}.jpg" for index in range(HEAVY_FILES)]
    body, headers = multipart([("files", name, "image/jpeg", image) for name in names])

    with ServiceProcess("onnx", log=tmp_path / "service.log") as service:
        pid = service.process.pid
        assert "muffin_v_chihuahua" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()  # python itself, no shell
        idle_mib = peak_resident_mib(pid)
        results: list[dict[str, Any]] = [{} for _ in range(HEAVY_CLIENTS)]
        checks: list[tuple[int | str, float]] = []
        done = threading.Event()
        go = threading.Barrier(HEAVY_CLIENTS)

        def run(number: int) -> None:
            results[number] = heavy_client(service.port, body, headers, names, go)

        threads = [threading.Thread(target=run, args=(number,)) for number in range(HEAVY_CLIENTS)]
        watcher = threading.Thread(target=health_checks, args=(service.url, done, checks), name="health")
        watcher.start()
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join(HEAVY_TIMEOUT_SECONDS + 30)
        finally:
            elapsed = time.monotonic() - started
            done.set()
            watcher.join(HEALTH_TIMEOUT_SECONDS + 5)
        assert not any(thread.is_alive() for thread in threads), "a client is still waiting for an answer"
        peak_mib = peak_resident_mib(pid)
        log = service.log()

    outcomes = [result["outcome"] for result in results]
    errors = [result["error"] for result in results if result["outcome"] == "error"]
    figures = {
        "clients": HEAVY_CLIENTS,
        "files_per_request": HEAVY_FILES,
        "file_mb": round(len(image) / (1024 * 1024), 2),
        "answers_200": outcomes.count(200),
        "answers_503": outcomes.count(503),
        "errors": len(errors),
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

"""One service pod's throughput, latency and peak memory at the manifest's limits: `make bench-scaling`.

    python -m benchmarks.scaling --image localhost/muffin-v-chihuahua-service --out docs/scaling.md

The service image runs under Podman the way deploy/kubernetes/overlays/split says (tests/kubernetes_manifests.py:
its user, read-only root, tmpfs, --cpus and --memory from its limits, its environment). Then:
- closed-loop clients, each one keep-alive connection posting the dataset's real photos one by one (raw body),
  at 1, 2, 4, 8 and 16 at once for DURATION seconds each: requests per second and latency percentiles;
- the pressure scenario of tests/test_load.py (24 clients each sending 16 images of 9 MB at once): the
  service's peak resident memory (VmHWM of its process, PID 1) and its cgroup's, against the memory limit.
The figures replace the block between the MEASURED markers in --out; the prose around them says what they mean.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import write_block
from tests.kubernetes_manifests import ROOT, container, deployment, quantity, rendered, run_options
from tests.servers import free_port, multipart, wait_for
from tests.test_container import ULIMITS, podman
from tests.test_load import HEAVY_CLIENTS, HEAVY_FILE_MB, HEAVY_FILES, heavy_client, noise_jpeg

CONCURRENCY = (1, 2, 4, 8, 16)
DURATION = 20.0
RATES = (100, 1_000, 10_000)  # requests per second the replicas are computed for
BEGIN, END = "<!-- MEASURED: make bench-scaling -->", "<!-- /MEASURED -->"


def photos() -> list[tuple[str, bytes]]:
    data = ROOT / "muffin_v_chihuahua" / "data"
    return [(path.name, path.read_bytes()) for path in sorted(data.glob("*/*.jpg"))]


def closed_loop(port: int, clients: int, seconds: float, bodies: list[tuple[str, bytes]]) -> dict:
    """`clients` clients, each sending its next photo as soon as the last one is answered, for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    go = threading.Barrier(clients + 1)

    def client(number: int, deadline_box: list[float]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        go.wait()
        index = number
        while time.monotonic() < deadline_box[0]:
            name, body = bodies[index % len(bodies)]
            index += clients
            started = time.monotonic()
            connection.request("POST", f"/predict?filename={name}", body, {"Content-Type": "image/jpeg"})
            answer = connection.getresponse()
            answer.read()
            if answer.status == 200:
                latencies[number].append(time.monotonic() - started)
            else:
                failures[number] += 1
        connection.close()

    deadline = [math.inf]
    threads = [threading.Thread(target=client, args=(number, deadline)) for number in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + seconds
    go.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    done = np.array([latency for per_client in latencies for latency in per_client])
    return {
        "clients": clients,
        "requests_per_second": len(done) / elapsed,
        **{f"p{q}_ms": float(np.percentile(done, q)) * 1000 for q in (50, 95, 99)},
        "failures": sum(failures),
    }


def pressure(port: int, name: str) -> dict:
    """tests/test_load.py's largest requests at once, against the container; its peaks afterwards."""
    image = noise_jpeg(HEAVY_FILE_MB)
    names = [f"noise-{index}.jpg" for index in range(HEAVY_FILES)]
    body, headers = multipart([("files", file, "image/jpeg", image) for file in names])
    go = threading.Barrier(HEAVY_CLIENTS)
    results: list[dict] = [{} for _ in range(HEAVY_CLIENTS)]

    def run(number: int) -> None:
        results[number] = heavy_client(port, body, headers, names, go)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(HEAVY_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = podman("exec", name, "cat", "/proc/1/status").stdout
    [hwm] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    cgroup = podman("exec", name, "cat", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes", check=False).stdout
    outcomes = [result["outcome"] for result in results]
    return {
        "answers_200": outcomes.count(200),
        "answers_503": outcomes.count(503),
        "errors": [result["error"] for result in results if result["outcome"] == "error"],
        "peak_resident_mib": int(hwm.split()[1]) / 1024,
        "cgroup_peak_mib": int(cgroup) / 2**20 if cgroup.strip().isdigit() else None,
        "oom_killed": podman("inspect", "--format", "{{.State.OOMKilled}}", name).stdout.strip() == "true",
    }


def operating_point(levels: list[dict]) -> dict:
    """The fewest clients whose throughput is within 10 % of the best: past it, more clients only queue."""
    best = max(level["requests_per_second"] for level in levels)
    return next(level for level in levels if level["requests_per_second"] >= 0.9 * best)


def render(measured: dict) -> str:
    rows = "\n".join(
        f"| {level['clients']} | {level['requests_per_second']:.1f} | {level['p50_ms']:.0f} | {level['p95_ms']:.0f} "
        f"| {level['p99_ms']:.0f} | {level['failures']} |"
        for level in measured["levels"]
    )
    point, peak = measured["operating_point"], measured["pressure"]
    per_pod = point["requests_per_second"] * measured["target_utilisation"]
    replicas = "\n".join(f"| {rate:,} | {math.ceil(rate / per_pod)} |" for rate in RATES)
    return f"""{BEGIN}
Measured {measured["when"]} on {measured["machine"]}, image `{measured["image"]}`, container limits
`--cpus {measured["cpus"]} --memory {measured["memory_mib"]:.0f}Mi` (the split overlay's), {DURATION:.0f} s per row,
the dataset's {measured["photos"]} photos posted one per request (load average before: {measured["load"]}).

| clients | requests/s | p50 ms | p95 ms | p99 ms | failed |
| ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

Operating point: **{point["clients"]} client(s), {point["requests_per_second"]:.1f} requests/s per pod at
p95 {point["p95_ms"]:.0f} ms** (the fewest clients within 10 % of the best throughput). At the HPA's
{measured["target_utilisation"]:.0%} CPU target a pod carries {per_pod:.1f} requests/s, so:

| requests/s | service replicas |
| ---: | ---: |
{replicas}

Peak memory under the pressure test (24 clients each sending 16 images of 9 MB at once) at
MUFFIN_V_CHIHUAHUA_MAX_HELD_MB={measured["max_held_mb"]}: **{peak["peak_resident_mib"]:.0f} MiB resident**
(cgroup, page cache included: {peak["cgroup_peak_mib"]:.0f} MiB) of the {measured["memory_mib"]:.0f} MiB limit;
{peak["answers_200"]} answered 200, {peak["answers_503"]} told 503 + Retry-After, {len(peak["errors"])} errors,
OOM-killed: {"yes" if peak["oom_killed"] else "no"}.
{END}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the service image (make package-services: IMAGE-service)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.md")
    args = parser.parse_args(argv)

    objects = rendered("split")
    service = deployment(objects, "service")
    [hpa] = [
        item
        for item in objects
        if item["kind"] == "HorizontalPodAutoscaler"
        and item["spec"]["scaleTargetRef"]["name"] == service["metadata"]["name"]
    ]
    limits = container(service)["resources"]["limits"]
    env = {variable["name"]: variable.get("value") for variable in container(service).get("env", [])}
    name, port = f"muffin-v-chihuahua-k8s-bench-{os.getpid()}", free_port()
    load = tuple(round(value, 1) for value in os.getloadavg())
    podman(
        "run", "--detach", "--name", name, *ULIMITS, *run_options(service), "-p", f"127.0.0.1:{port}:8000", args.image
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz")
        bodies = photos()
        closed_loop(port, 2, 3.0, bodies)  # warm-up: the engine's first runs allocate its buffers
        levels = []
        for clients in CONCURRENCY:
            levels.append(closed_loop(port, clients, DURATION, bodies))
            print(json.dumps(levels[-1]))
        peak = pressure(port, name)
        print(json.dumps(peak))
    finally:
        podman("rm", "--force", "--ignore", name, check=False)
    measured = {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs (other jobs may share them: see the load average)",
        "image": args.image,
        "cpus": quantity(limits["cpu"]),
        "memory_mib": quantity(limits["memory"]) / 2**20,
        "max_held_mb": env.get("MUFFIN_V_CHIHUAHUA_MAX_HELD_MB", "default"),
        "photos": len(bodies),
        "load": load,
        "levels": levels,
        "operating_point": operating_point(levels),
        "target_utilisation": hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] / 100,
        "pressure": peak,
    }
    write_block(args.out, BEGIN, END, render(measured))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The processes `make bench` measures: each in its own process group, its stderr in a log, reaped with its peak
memory; servers waited for until they answer."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.paths import LOGS


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

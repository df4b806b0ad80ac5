"""Start real servers for the tests: a free loopback port, a process that is always stopped, a wait for 200."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float = 120, process: subprocess.Popen | None = None) -> float:
    """Seconds until url answers 200; fails early if the server process has exited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the source tree on the path, plus extra variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


@contextlib.contextmanager
def running(command: list, log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A server in its own process group, its output in log; stopped (group and all) on exit."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(part) for part in command], cwd=cwd, env=env or clean_env(),
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

"""Start real servers for the tests and ask them over HTTP.

A free loopback port; a server process in its own process group, its output in a log file, always
stopped (group and all); a wait until a URL answers 200; `python -m muffin_v_chihuahua serve` as a
ServiceProcess; a TCP Relay that counts connections; and the small HTTP helpers (requests, a new
connection per call) the tests ask the servers with.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3

from muffin_v_chihuahua.environment import ENGINE_VARIABLE
from tests import corpus

PACKAGE = Path(__file__).resolve().parents[1] / "muffin_v_chihuahua"
CARD = json.loads((PACKAGE / "model" / "card.json").read_text())  # what the service's GET /card must answer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving_folder(folder: Path) -> Iterator[str]:
    """A static HTTP server for `folder` on a free loopback port, for the with block; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def serving_app(app: Any, port: int) -> Iterator[str]:
    """An ASGI `app` served by uvicorn on 127.0.0.1:`port` in a thread of this process, for the with block (a real
    server around an app a test made, e.g. with a loader it holds back); yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise AssertionError(f"uvicorn stopped before it listened on port {port}")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def closed_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the source tree on the path, plus extra variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


# ----- processes ------------------------------------------------------------------------------------


def spawn(command: list, log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A server in its own process group (so that stop() ends it and its children), its output in log."""
    with Path(log).open("wb") as output:
        return subprocess.Popen(
            [str(part) for part in command],
            cwd=cwd,
            env=env or clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def default_sigint() -> None:
    """In the child before it starts (preexec_fn): SIGINT as a terminal delivers it, even where the tests run with
    it ignored (a background job), so that Python turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL if it has not ended 20 s later."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def running(
    command: list, log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """spawn() for the duration of a with block: stopped on exit, whatever happened."""
    process = spawn(command, log, cwd, env)
    try:
        yield process
    finally:
        stop(process)


def answers(
    url: str,
    timeout: float = 120,
    process: subprocess.Popen | None = None,
    interval: float = 0.1,
    request_timeout: float = 5,
) -> Iterator[tuple[int, Any]]:
    """Every (status, body) url answers, asked every `interval` s until the caller stops listening;
    fails after `timeout` s, or early if the server process has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} before {url} answered")
        try:
            answer = get(url, timeout=request_timeout)
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or not answering yet
            answer = None
        if answer is not None:
            yield answer
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {url} after {timeout} s")


def wait_for(url: str, timeout: float = 120, process: subprocess.Popen | None = None) -> float:
    """Seconds until url answers 200; fails early if the server process has exited."""
    started = time.monotonic()
    for status, _ in answers(url, timeout, process):
        if status == 200:
            return time.monotonic() - started


class ServiceProcess:
    """`python -m muffin_v_chihuahua serve` on 127.0.0.1, started with spawn() and ended with stop().

    Use it as a context manager, or start() and stop() it (a test that stops and restarts a service).
    """

    def __init__(
        self,
        engine: str = "onnx",
        port: int | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        args: list[str] | None = None,
    ):
        """args: more options for serve (e.g. ["--model-dir", folder])."""
        self.engine = engine
        self.args = list(args or [])
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(**(env or {}))
        self.env.pop(ENGINE_VARIABLE, None)
        if log is None:
            descriptor, log = tempfile.mkstemp(prefix="service-", suffix=".log")
            os.close(descriptor)
        self.log_path = Path(log)
        self.process: subprocess.Popen | None = None
        self.startup: list[tuple[int, Any]] = []  # (status, JSON) of each health check while starting
        self.predict_while_loading: tuple[int, Any] | None = None

    def start(self) -> ServiceProcess:
        command = [
            sys.executable,
            "-m",
            "muffin_v_chihuahua",
            "serve",
            "--port",
            self.port,
            "--engine",
            self.engine,
            *self.args,
        ]
        self.process = spawn(command, self.log_path, env=self.env)
        return self

    def wait_until_listening(self, timeout: float = 120) -> tuple[int, Any]:
        """The first (status, body) the health check answers, whatever it is."""
        try:
            return next(answers(self.url + "/", timeout, self.process, interval=0.05))
        except AssertionError as error:
            pytest.fail(f"{error}:\n{self.log()}")

    def wait_until_ready(self, timeout: float = 240) -> ServiceProcess:
        """Poll the health check from process start until 200; record what it answered on the way."""
        try:
            for status, body in answers(self.url + "/", timeout, self.process, interval=0.05):
                self.startup.append((status, body))
                if status == 200:
                    return self
                if status == 503 and self.predict_while_loading is None:
                    self.predict_while_loading = post_image(self.url, corpus.DATASET_PHOTO.read_bytes(), "image/jpeg")
        except AssertionError as error:
            pytest.fail(f"{error}:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def __enter__(self) -> ServiceProcess:
        self.start()
        try:
            return self.wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exception) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# ----- a TCP relay ----------------------------------------------------------------------------------


class Relay(socketserver.ThreadingTCPServer):
    """A loopback port that relays each TCP connection to 127.0.0.1:`port`, counting them, for a with block.

    With listening=False it refuses connections until listen() (at once: the port is bound, nothing waits
    for a timeout), so that a test chooses the moment a service comes up. With `answering` set to False it
    passes requests on but, instead of an answer, closes the connection (as a service that fails mid-request).
    """

    daemon_threads = True  # a connection a client left open does not hold up the end of the test

    def __init__(self, port: int, listening: bool = True):
        super().__init__(("127.0.0.1", 0), _Relaying, bind_and_activate=False)
        self.server_bind()
        self.target = ("127.0.0.1", port)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.connections = 0
        self.answering = True
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        if listening:
            self.listen()

    def listen(self) -> None:
        if self.thread.ident is None:  # not started yet
            self.server_activate()
            self.thread.start()

    def process_request(self, request, client_address) -> None:
        self.connections += 1  # here, in the one serving thread, so that no two connections count at once
        super().process_request(request, client_address)

    def __exit__(self, *exception) -> None:
        if self.thread.ident is not None:
            self.shutdown()
        self.server_close()


class _Relaying(socketserver.BaseRequestHandler):
    server: Relay

    def handle(self) -> None:
        with socket.create_connection(self.server.target) as service:
            answers = threading.Thread(target=self.pump, args=(service, self.request, True))
            answers.start()
            self.pump(self.request, service, False)
            answers.join()

    def pump(self, source: socket.socket, target: socket.socket, is_answer: bool) -> None:
        """Bytes from source to target until source ends (or an answer comes while the relay is not answering),
        then the end of target's side."""
        with contextlib.suppress(OSError):  # either side reset the connection: this direction is over
            while (data := source.recv(1 << 16)) and (self.server.answering or not is_answer):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


# ----- HTTP -------------------------------------------------------------------------------------------


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 120):
    """(status, parsed JSON or text) for one request, its body sent as it is; HTTP errors are answers too."""
    response = requests.request(method, url, data=body, headers=headers, timeout=timeout)
    if response.headers.get("Content-Type", "").split(";", 1)[0].strip() == "application/json":
        return response.status_code, response.json()
    return response.status_code, response.content.decode(errors="replace")


def get(url: str, timeout: float = 120):
    return request("GET", url, timeout=timeout)


def multipart(files: list[tuple[str, str, str | None, bytes]]) -> tuple[bytes, dict]:
    """A multipart/form-data body from (field, file name, content type or None, bytes), and its header;
    encoded as requests encodes `files=` (urllib3's encoder), as bytes that a test may alter before sending."""
    body, content_type = urllib3.encode_multipart_formdata(
        [(field, (name, data, kind)) for field, name, kind, data in files]
    )
    return body, {"Content-Type": content_type}


def post_files(url: str, files: list[tuple[str, bytes]], kind: str | None = "image/jpeg", field: str = "files"):
    """POST /predict with (file name, bytes) as multipart files, each with the content type `kind`."""
    body, headers = multipart([(field, name, kind, data) for name, data in files])
    return request("POST", url + "/predict", body, headers)


def image_input(data: list[bytes], **parameters) -> dict:
    """The Open Inference Protocol's input tensor `image` of encoded images, as base64 JSON, with `parameters`."""
    return {
        "name": "image",
        "datatype": "BYTES",
        "shape": [len(data)],
        "data": [base64.b64encode(item).decode() for item in data],
        **({"parameters": parameters} if parameters else {}),
    }


def post_image(url: str, data: bytes, kind: str, filename: str | None = None):
    """POST /predict with one image as the raw body (content type `kind`), named by ?filename=."""
    target = url + "/predict" + (f"?filename={urllib.parse.quote(filename)}" if filename else "")
    return request("POST", target, data, {"Content-Type": kind})

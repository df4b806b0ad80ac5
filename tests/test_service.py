"""The HTTP model service, started for real (`python -m muffin_v_chihuahua serve`) and asked over HTTP.

Health before and after loading, predictions (multipart and raw body), every kind of bad input, a
burst of concurrent clients, the OpenAPI schema and docs; on both engines.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from muffin_v_chihuahua import engines, images

pytestmark = pytest.mark.service

PACKAGE = Path(__file__).resolve().parents[1] / "muffin_v_chihuahua"
CARD = json.loads((PACKAGE / "model" / "card.json").read_text())
VERDICTS = {"muffin", "chihuahua", "neither"}
# Only for these tests: the service waits this long before loading, so that its 503 is observable.
LOAD_DELAY_SECONDS = "1.5"


# ----- helpers, also used by test_remote.py ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """`python -m muffin_v_chihuahua serve` on 127.0.0.1 in a subprocess, its output in a log file."""

    def __init__(self, engine: str = "onnx", port: int | None = None, env: dict[str, str] | None = None):
        self.engine = engine
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.env.pop(engines.ENGINE_VARIABLE, None)
        self.process: subprocess.Popen | None = None
        self.log_file = tempfile.NamedTemporaryFile(prefix="service-", suffix=".log", delete=False)
        self.startup: list[tuple[int, dict | None]] = []  # (status, JSON) of each health check while starting
        self.predict_while_loading: tuple[int, dict] | None = None

    def start(self) -> ServiceProcess:
        command = [sys.executable, "-m", "muffin_v_chihuahua", "serve", "--port", str(self.port), "--engine", self.engine]
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT)
        return self

    def wait_until_ready(self, timeout: float = 240) -> ServiceProcess:
        """Poll the health check from process start until 200; record what it answered on the way."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the service exited with {self.process.returncode}:\n{self.log()}")
            try:
                status, body = get(self.url + "/", timeout=5)
            except OSError:  # not listening yet
                time.sleep(0.05)
                continue
            self.startup.append((status, body))
            if status == 200:
                return self
            if status == 503 and self.predict_while_loading is None:
                self.predict_while_loading = post_image(self.url, photo_bytes(), "image/jpeg")
            time.sleep(0.05)
        pytest.fail(f"the service was not ready within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 120):
    """(status, parsed JSON or text) for one request; HTTP errors are answers too."""
    call = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            status, payload, kind = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, payload, kind = error.code, error.read(), error.headers.get_content_type()
    return status, json.loads(payload) if kind == "application/json" else payload.decode(errors="replace")


def get(url: str, timeout: float = 120):
    return request("GET", url, timeout=timeout)


def multipart(files: list[tuple[str, str, str | None, bytes]]) -> tuple[bytes, dict]:
    """A multipart/form-data body from (field, file name, content type or None, bytes)."""
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for field, name, kind, data in files:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'.encode())
        if kind:
            body.write(f"Content-Type: {kind}\r\n".encode())
        body.write(b"\r\n" + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_files(url: str, files: list[tuple[str, bytes]], kind: str | None = "image/jpeg", field: str = "files"):
    body, headers = multipart([(field, name, kind, data) for name, data in files])
    return request("POST", url + "/predict", body, headers)


def post_image(url: str, data: bytes, kind: str, filename: str | None = None):
    target = url + "/predict" + (f"?filename={filename}" if filename else "")
    return request("POST", target, data, {"Content-Type": kind})


def photo_bytes(label: str = "muffin", index: int = 0) -> bytes:
    return sorted((PACKAGE / "data" / label).glob("*.jpg"))[index].read_bytes()


# ----- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(engine):
    """A service on each engine, with the test-only load delay so that its start-up can be watched."""
    running = ServiceProcess(engine, env={"MUFFIN_V_CHIHUAHUA_TEST_LOAD_DELAY_SECONDS": LOAD_DELAY_SECONDS}).start()
    try:
        yield running.wait_until_ready()
    finally:
        running.stop()


def assert_problem(answer, status: int, *words: str, file: str | None = None):
    """A client error with a JSON body that says what is wrong (and names the file)."""
    got, body = answer
    assert got == status, body
    assert isinstance(body, dict) and body["errors"], body
    text = body["detail"].lower()
    assert all(word.lower() in text for word in words), body
    if file is not None:
        assert file in [error["file"] for error in body["errors"]] and file in body["detail"], body


# ----- health, card, schema ---------------------------------------------------------------------------


def test_health_is_503_loading_until_the_model_is_loaded_then_200(service):
    statuses = [status for status, _ in service.startup]
    assert statuses[0] == 503 and statuses[-1] == 200, service.startup
    assert set(statuses[: statuses.index(200)]) == {503}
    assert all(body["status"] == "loading" for status, body in service.startup if status == 503)
    status, body = service.predict_while_loading
    assert status == 503 and body["status"] == "loading"


def test_health_names_the_model_the_engine_runs(service, engine):
    status, health = get(service.url + "/")
    assert status == 200 and health["status"] == "ok"
    model_file = PACKAGE / "model" / CARD["files"][engine]["file"]
    assert health["engine"] == engine and health["model_file"] == model_file.name
    assert health["model_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest() == CARD["files"][engine]["sha256"]
    assert health["backbone"] == CARD["backbone"] and health["model_version"] == CARD["version"]
    assert health["input_size"] == CARD["input_size"]
    assert health["max_upload_mb"] == images.MAX_UPLOAD_MB


def test_card_is_the_model_card(service):
    assert get(service.url + "/card") == (200, CARD)


def test_openapi_schema_and_docs(service):
    status, schema = get(service.url + "/openapi.json")
    assert status == 200 and {"/", "/card", "/predict"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    status, page = get(service.url + "/docs")
    assert status == 200 and "swagger" in page.lower()


# ----- predictions ------------------------------------------------------------------------------------


def test_tells_muffins_from_chihuahuas_on_the_dataset_several_files_per_request(service, labelled_photos):
    results = []
    for start in range(0, len(labelled_photos), 16):
        batch = labelled_photos[start : start + 16]
        status, body = post_files(service.url, [(path.name, path.read_bytes()) for _, path in batch])
        assert status == 200, body
        assert [p["file"] for p in body["predictions"]] == [path.name for _, path in batch]
        results += body["predictions"]
    correct = sum(p["verdict"] == label for p, (label, _) in zip(results, labelled_photos))
    assert correct / len(labelled_photos) >= 0.95
    for prediction in results:
        assert prediction["verdict"] in VERDICTS and 0 <= prediction["probability"] <= 1
        assert (prediction["reason"] is not None) == (prediction["verdict"] == "neither")
        probabilities = [label["probability"] for label in prediction["imagenet"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)


def test_a_raw_image_body_gets_one_prediction(service, engine):
    status, body = post_image(service.url, photo_bytes("chihuahua"), "image/jpeg", filename="dog.jpg")
    assert status == 200, body
    [prediction] = body["predictions"]
    assert prediction["file"] == "dog.jpg" and prediction["verdict"] == "chihuahua"
    assert body["engine"] == engine and body["model_sha256"] == CARD["files"][engine]["sha256"]


def test_a_png_and_a_part_without_content_type_are_accepted(service):
    picture = Image.open(io.BytesIO(photo_bytes("muffin")))
    png = io.BytesIO()
    picture.save(png, format="PNG")
    status, body = post_files(service.url, [("muffin.png", png.getvalue())], kind=None)
    assert status == 200 and body["predictions"][0]["verdict"] == "muffin", body


# ----- bad input: 413, 415, 422 with a JSON body; the service keeps serving ---------------------------

LIMIT = images.MAX_UPLOAD_MB * 1024 * 1024


@functools.cache
def too_many_pixels_png() -> bytes:
    picture = Image.new("1", (8000, 6000))  # 48 megapixels in a few kilobytes
    data = io.BytesIO()
    picture.save(data, format="PNG")
    return data.getvalue()


def test_an_oversized_raw_body_is_refused_from_its_content_length_before_it_is_sent(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as connection:
        connection.sendall(
            f"POST /predict?filename=huge.jpg HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {LIMIT + 1}\r\n\r\n".encode()
        )  # and not one byte of the body
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        body = json.loads(answer.read())
    assert answer.status == 413 and "huge.jpg" in body["detail"] and "10 MB" in body["detail"], body


def test_an_oversized_chunked_body_is_refused_while_it_is_read(service):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    chunks = (b"\xff\xd8" + bytes(1024 * 1024 - 2) if i == 0 else bytes(1024 * 1024) for i in range(images.MAX_UPLOAD_MB + 1))
    connection.request("POST", "/predict", body=chunks, headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
    answer = connection.getresponse()
    body = json.loads(answer.read())
    connection.close()
    assert answer.status == 413 and "larger than the limit" in body["detail"], body


def test_an_oversized_file_among_several_is_refused_by_name(service):
    answer = post_files(service.url, [("fine.jpg", photo_bytes()), ("huge.jpg", b"\xff\xd8" + bytes(LIMIT))])
    assert_problem(answer, 413, "larger than the limit of 10 MB", file="huge.jpg")


def test_too_many_files_are_refused(service):
    assert_problem(post_files(service.url, [(f"{i}.jpg", photo_bytes()) for i in range(17)]), 413, "at most 16")


@pytest.mark.parametrize(
    "kind, data, status, words",
    [
        ("text/plain", lambda: b"hello", 415, ["text/plain", "not accepted"]),
        ("image/svg+xml", lambda: b"<svg/>", 415, ["image/svg+xml"]),
        ("image/jpeg", lambda: b"hello, not a photo", 415, ["not an image"]),
        ("image/jpeg", lambda: b"", 422, ["empty"]),
        ("image/jpeg", lambda: photo_bytes()[:4000], 422, ["truncated or corrupt"]),
        ("image/png", too_many_pixels_png, 422, ["pixels"]),
    ],
    ids=["text", "svg", "not-an-image", "empty", "truncated", "too-many-pixels"],
)
def test_a_bad_raw_body_gets_a_json_error(service, kind, data, status, words):
    assert_problem(post_image(service.url, data(), kind, filename="bad.bin"), status, *words, file="bad.bin")


@pytest.mark.parametrize(
    "kind, data, status, words",
    [
        ("text/plain", lambda: b"hello", 415, ["text/plain"]),
        ("image/jpeg", lambda: b"hello, not a photo", 415, ["not an image"]),
        ("image/jpeg", lambda: b"\xff\xd8\xff\xe0" + bytes(500), 422, ["truncated or corrupt"]),
        ("image/jpeg", lambda: photo_bytes()[:4000], 422, ["truncated or corrupt"]),
        ("image/png", too_many_pixels_png, 422, ["40,000,000 pixels"]),
    ],
    ids=["text", "not-an-image", "corrupt", "truncated", "too-many-pixels"],
)
def test_a_bad_file_beside_a_good_one_is_named(service, kind, data, status, words):
    body, headers = multipart([("files", "good.jpg", "image/jpeg", photo_bytes()), ("files", "bad.jpg", kind, data())])
    answer = request("POST", service.url + "/predict", body, headers)
    assert_problem(answer, status, *words, file="bad.jpg")
    assert "good.jpg" not in answer[1]["detail"]


def test_a_request_without_images_is_refused(service):
    body, headers = multipart([("note", "x.txt", None, b"")])
    body = body.replace(b'; filename="x.txt"', b"")  # a plain form field, not a file
    assert_problem(request("POST", service.url + "/predict", body, headers), 422, "no image")
    assert_problem(request("POST", service.url + "/predict", b"", {"Content-Type": "application/json"}), 415, "not accepted")


@pytest.mark.parametrize(
    "content_type, body, words",
    [
        ("multipart/form-data", b"abc", ["no boundary"]),
        ("multipart/form-data; boundary=XX", b"garbage", ["cannot be parsed"]),
        ("multipart/form-data; boundary=XX",
         b'--XX\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\nabc', ["incomplete"]),
    ],
    ids=["no-boundary", "garbage", "no-closing-boundary"],
)
def test_a_malformed_multipart_body_is_refused(service, content_type, body, words):
    assert_problem(request("POST", service.url + "/predict", body, {"Content-Type": content_type}), 422, *words)


def test_the_size_limit_is_set_by_an_environment_variable():
    small = ServiceProcess("onnx", env={"MUFFIN_V_CHIHUAHUA_MAX_UPLOAD_MB": "0.01"}).start()
    try:
        small.wait_until_ready()
        assert get(small.url + "/")[1]["max_upload_mb"] == 0.01
        photo = photo_bytes()
        assert len(photo) > 0.01 * 1024 * 1024
        assert_problem(post_image(small.url, photo, "image/jpeg", filename="big.jpg"), 413, "0.01 MB", file="big.jpg")
        assert_problem(post_files(small.url, [("big.jpg", photo)]), 413, "0.01 MB", file="big.jpg")
    finally:
        small.stop()


def test_the_service_still_answers_after_bad_input(service):
    assert_problem(post_image(service.url, b"junk", "image/jpeg"), 415, "not an image")
    assert get(service.url + "/")[0] == 200
    status, body = post_image(service.url, photo_bytes("muffin", 3), "image/jpeg")
    assert status == 200 and body["predictions"][0]["verdict"] == "muffin"
    assert "Traceback" not in service.log() and " 500 " not in service.log()


# ----- concurrency ------------------------------------------------------------------------------------


def test_a_burst_of_concurrent_clients_gets_the_same_answers_as_one_client(service, labelled_photos):
    """8 clients x 5 requests, each request a different photo, while the health check is asked too."""
    photos = labelled_photos[::3][:40]
    reference = {}
    for _, path in photos:  # one at a time first
        status, body = post_image(service.url, path.read_bytes(), "image/jpeg", filename=path.name)
        assert status == 200, body
        reference[path.name] = body["predictions"][0]

    def client(number: int):
        answers = []
        for _, path in photos[number * 5 : number * 5 + 5]:
            answers.append((path.name, post_image(service.url, path.read_bytes(), "image/jpeg", filename=path.name)))
        return answers

    health = []
    done = threading.Event()

    def check_health():
        while not done.is_set():
            health.append(get(service.url + "/", timeout=60)[0])
            time.sleep(0.05)

    watcher = threading.Thread(target=check_health)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = [answer for answers in pool.map(client, range(8)) for answer in answers]
    finally:
        done.set()
        watcher.join()
    assert len(answers) == 40
    for name, (status, body) in answers:
        assert status == 200, body
        [prediction] = body["predictions"]
        assert prediction["file"] == name and prediction["verdict"] == reference[name]["verdict"]
        assert prediction["probability"] == pytest.approx(reference[name]["probability"], abs=1e-5)
    assert health and set(health) == {200}


# ----- the command line -------------------------------------------------------------------------------


def test_serve_without_the_service_extra_names_the_extra(monkeypatch, capsys):
    from muffin_v_chihuahua.__main__ import main

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    assert main(["serve", "--port", str(free_port())]) == 2
    error = capsys.readouterr().err
    assert "muffin-v-chihuahua[service]" in error and "fastapi" in error


def test_serve_with_a_bad_setting_says_which(monkeypatch, capsys):
    from muffin_v_chihuahua.__main__ import main

    monkeypatch.setenv("MUFFIN_V_CHIHUAHUA_MAX_UPLOAD_MB", "lots")
    assert main(["serve", "--port", str(free_port())]) == 2
    assert "MUFFIN_V_CHIHUAHUA_MAX_UPLOAD_MB" in capsys.readouterr().err


def test_the_page_and_the_cli_do_not_import_the_service_libraries():
    code = (
        "import sys, muffin_v_chihuahua.__main__, muffin_v_chihuahua.remote, muffin_v_chihuahua.classifier; "
        "print(sorted(m for m in ('fastapi', 'pydantic', 'muffin_v_chihuahua.service') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

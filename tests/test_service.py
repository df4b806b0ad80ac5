"""The HTTP model service, started for real (`python -m muffin_v_chihuahua serve`) and asked over HTTP.

End to end: health once loaded, predictions (multipart and raw body) equal to the embedded model's, the whole
corpus of odd and bad files (tests/corpus.py) and the bad requests it does not cover, a burst of concurrent
clients, the OpenAPI schema and docs, the limits set by environment variables, the command line; on both engines.
What the app does before its model is loaded is tested in process (test_service_health.py).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from muffin_v_chihuahua import images, uploads
from muffin_v_chihuahua.__main__ import EXIT_INTERRUPTED
from muffin_v_chihuahua.service.app import CONNECTIONS
from tests import corpus
from tests.conftest import DEFAULT_FILES
from tests.servers import (
    CARD,
    PACKAGE,
    ServiceProcess,
    clean_env,
    default_sigint,
    free_port,
    get,
    multipart,
    post_files,
    post_image,
    request,
    stop,
    wait_for,
)

pytestmark = pytest.mark.service

VERDICTS = {"muffin", "chihuahua", "neither"}
# The HTTP status for each kind of file the decoder refuses (images.ImageError.kind).
STATUS_BY_KIND = {"too-large": 413, "not-an-image": 415, "empty": 422, "corrupt": 422, "too-many-pixels": 422}
CASES = {case.name: case for case in corpus.cases()}


def photo_bytes(label: str = "muffin", index: int = 0) -> bytes:
    return sorted((PACKAGE / "data" / label).glob("*.jpg"))[index].read_bytes()


# ----- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(engine, tmp_path_factory):
    """A service on each engine."""
    log = tmp_path_factory.mktemp(f"service-{engine}") / "service.log"
    with ServiceProcess(engine, log=log) as running:
        yield running


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
    """However soon the model loads, the health check never said anything but "loading" before 200."""
    statuses = [status for status, _ in service.startup]
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}, service.startup
    assert all(body["status"] == "loading" for status, body in service.startup if status == 503)
    if service.predict_while_loading is not None:
        status, body = service.predict_while_loading
        assert status == 503 and body["status"] == "loading"


def test_health_names_the_model_the_engine_runs(service, engine):
    status, health = get(service.url + "/")
    assert status == 200 and health["status"] == "ok"
    files_entry = DEFAULT_FILES[engine]
    model_file = PACKAGE / "model" / CARD["files"][files_entry]["file"]
    assert health["engine"] == files_entry and health["model_file"] == model_file.name
    assert (
        health["model_sha256"]
        == hashlib.sha256(model_file.read_bytes()).hexdigest()
        == CARD["files"][files_entry]["sha256"]
    )
    assert health["backbone"] == CARD["backbone"] and health["model_version"] == CARD["model_version"]
    assert health["input_size"] == CARD["input_size"]
    assert health["max_upload_mb"] == uploads.MAX_UPLOAD_MB
    assert health["neither_threshold"] == CARD["neither"]["threshold"]


def test_card_is_the_model_card(service):
    assert get(service.url + "/card") == (200, CARD)


def test_openapi_schema_and_docs(service):
    status, schema = get(service.url + "/openapi.json")
    assert status == 200 and {"/", "/card", "/predict"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    [heatmap] = [p for p in schema["paths"]["/predict"]["post"]["parameters"] if p["name"] == "heatmap"]
    assert heatmap["in"] == "query" and heatmap["schema"]["default"] is False
    assert {"heatmap", "heatmap_class"} <= set(schema["components"]["schemas"]["PredictionOut"]["properties"])


def test_the_docs_page_renders_in_a_browser_that_reaches_nothing_but_the_service(service, browser):
    """Every request the page makes outside the service is refused: Swagger UI must come from the service."""
    page = browser.new_page()
    outside = []

    def only_the_service(route):
        if route.request.url.startswith(service.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_service)
    page.goto(service.url + "/docs")
    title = page.locator(".swagger-ui .info .title")
    title.wait_for(timeout=30_000)
    assert title.inner_text().startswith("Muffin or chihuahua")
    assert page.locator(".opblock-summary-path", has_text="/predict").count() >= 1  # the operations, from the schema
    page.close()
    assert outside == []


# ----- predictions ------------------------------------------------------------------------------------


def test_answers_what_the_embedded_model_says_of_every_photo_several_files_per_request(
    service, classifier, labelled_photos
):
    """The service runs the model the package embeds: same verdicts and probabilities, photo by photo."""
    results = []
    for start in range(0, len(labelled_photos), 16):
        batch = labelled_photos[start : start + 16]
        status, body = post_files(service.url, [(path.name, path.read_bytes()) for _, path in batch])
        assert status == 200, body
        assert [p["file"] for p in body["predictions"]] == [path.name for _, path in batch]
        results += body["predictions"]
    expected = classifier.predict(
        [images.decode(path.read_bytes(), classifier.input_size) for _, path in labelled_photos]
    )
    assert [p["verdict"] for p in results] == [p.verdict for p in expected]
    for answered, own in zip(results, expected, strict=True):
        assert abs(answered["probability"] - own.probability) <= 1e-5
        assert [label["name"] for label in answered["imagenet"]] == [label.name for label in own.imagenet]
        for label, own_label in zip(answered["imagenet"], own.imagenet, strict=True):
            assert abs(label["probability"] - own_label.probability) <= 1e-5  # batches of 16 here, of 120 there
        assert answered["reason"] == own.reason


def test_a_raw_image_body_gets_one_prediction(service, engine):
    status, body = post_image(service.url, photo_bytes("chihuahua"), "image/jpeg", filename="dog.jpg")
    assert status == 200, body
    [prediction] = body["predictions"]
    assert prediction["file"] == "dog.jpg" and prediction["verdict"] == "chihuahua"
    files_entry = DEFAULT_FILES[engine]
    assert body["engine"] == files_entry and body["model_sha256"] == CARD["files"][files_entry]["sha256"]


def test_a_photo_that_is_neither_has_a_null_probability_its_evidence_and_the_reason(service, classifier):
    from builders.neither import negative_photos

    cat = negative_photos()["cat"]
    status, body = post_image(service.url, cat, "image/png", filename="cat.png")
    assert status == 200, body
    [answered] = body["predictions"]
    [own] = classifier.predict([images.decode(cat, classifier.input_size)])
    assert (answered["verdict"], answered["probability"], answered["reason"]) == ("neither", None, own.reason)
    assert answered["evidence"] == pytest.approx(own.evidence, abs=1e-6)


def test_heatmaps_only_with_heatmap_true_as_the_embedded_model_draws_them(service, classifier):
    from builders.neither import negative_photos

    photos = [
        ("dog.jpg", photo_bytes("chihuahua")),
        ("muffin.jpg", photo_bytes("muffin")),
        ("cat.png", negative_photos()["cat"]),
    ]
    body, headers = multipart([("files", name, None, data) for name, data in photos])
    status, plain = request("POST", service.url + "/predict", body, headers)
    assert status == 200 and all("heatmap" not in p and "heatmap_class" not in p for p in plain["predictions"])
    assert plain["predictions"][2]["probability"] is None  # null stays: only the heatmap keys are left out
    status, looked = request("POST", service.url + "/predict?heatmap=true", body, headers)
    assert status == 200, looked
    own = classifier.predict([images.decode(data, classifier.input_size) for _, data in photos], heatmap=True)
    assert [p["verdict"] for p in looked["predictions"]] == ["chihuahua", "muffin", "neither"]
    for answered, expected in zip(looked["predictions"], own, strict=True):
        assert answered["heatmap_class"] == expected.heatmap_class
        assert np.shape(answered["heatmap"]) == tuple(CARD["heatmap"]["shape"][:2])
        np.testing.assert_allclose(answered["heatmap"], expected.heatmap, atol=1e-4, strict=False)
    status, raw = request(
        "POST",
        service.url + "/predict?filename=dog.jpg&heatmap=true",
        photo_bytes("chihuahua"),
        {"Content-Type": "image/jpeg"},
    )
    assert status == 200 and raw["predictions"][0]["heatmap_class"] == "chihuahua"


def test_a_png_and_a_part_without_content_type_are_accepted(service):
    picture = Image.open(io.BytesIO(photo_bytes("muffin")))
    png = io.BytesIO()
    picture.save(png, format="PNG")
    status, body = post_files(service.url, [("muffin.png", png.getvalue())], kind=None)
    assert status == 200 and body["predictions"][0]["verdict"] == "muffin", body


# ----- the corpus: every odd and bad file, one request each ---------------------------------------------

LIMIT = uploads.MAX_UPLOAD_MB * 1024 * 1024
# A few corpus cases sent as the raw body too (one of each kind, and a name that must be URL-encoded).
RAW_CASES = {
    "real-photo": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "odd-file-name": "image/jpeg",
    "empty": "image/jpeg",
    "text-as-jpg": "image/jpeg",
    "truncated-png": "image/png",
    "png-bomb": "image/png",
    "over-size-limit": "image/jpeg",
}
# One bad file of each kind, sent beside a good one.
BESIDE_A_GOOD_ONE = ["empty", "text-as-jpg", "truncated-jpeg", "png-bomb", "over-size-limit"]


@pytest.fixture(scope="module")
def corpus_answers(service) -> dict[str, tuple]:
    """Every corpus case POSTed as a multipart file, one request each, as a browser would send it:
    {case name: (status, body)}."""
    return {
        case.name: post_files(service.url, [(case.filename, case.data)], kind="application/octet-stream")
        for case in corpus.cases()
    }


def assert_corpus_answer(case: corpus.Case, answer) -> None:
    """A verdict for a good file; for a bad one the status of its kind and a JSON body that names the file and
    says what is wrong in the decoder's own words (as the CLI and the page do)."""
    status, body = answer
    if case.expected == corpus.VERDICT:
        assert status == 200, body
        [prediction] = body["predictions"]
        assert prediction["file"] == case.filename and prediction["verdict"] in VERDICTS, body
        return
    if case.expected == "too-large":  # refused while it is read, before the decoder sees it
        words = ["larger than the limit of 10 MB"]
    else:
        with pytest.raises(images.ImageError) as refused:
            images.open_rgb(case.data)
        words = [str(refused.value)]
    assert_problem(answer, STATUS_BY_KIND[case.expected], *words, file=case.filename)


@pytest.mark.parametrize("case", corpus.cases(), ids=repr)
def test_every_corpus_file_gets_a_verdict_or_a_json_error_naming_it(corpus_answers, case):
    assert_corpus_answer(case, corpus_answers[case.name])


@pytest.mark.parametrize("case", [CASES[name] for name in RAW_CASES], ids=repr)
def test_corpus_files_as_a_raw_body(service, case):
    assert_corpus_answer(case, post_image(service.url, case.data, RAW_CASES[case.name], filename=case.filename))


@pytest.mark.parametrize("case", [CASES[name] for name in BESIDE_A_GOOD_ONE], ids=repr)
def test_a_bad_corpus_file_beside_a_good_one_is_named_alone(service, case):
    answer = post_files(
        service.url,
        [("good.jpg", corpus.DATASET_PHOTO.read_bytes()), (case.filename, case.data)],
        kind="application/octet-stream",
    )
    assert_corpus_answer(case, answer)
    assert "good.jpg" not in answer[1]["detail"]


def test_the_service_still_answers_after_the_whole_corpus(service, corpus_answers):
    assert len(corpus_answers) == len(corpus.cases())
    assert all(status < 500 for status, _ in corpus_answers.values()), corpus_answers
    assert get(service.url + "/")[0] == 200
    status, body = post_image(service.url, photo_bytes("muffin", 3), "image/jpeg")
    assert status == 200 and body["predictions"][0]["verdict"] == "muffin"
    assert "Traceback" not in service.log() and " 500 " not in service.log()


# ----- bad requests the corpus does not cover: 413, 415, 422 with a JSON body --------------------------


@pytest.mark.parametrize("expect", [False, True], ids=["sent-later", "expect-100-continue"])
def test_an_oversized_raw_body_is_refused_from_its_content_length_before_it_is_sent(service, expect):
    """The answer comes without a byte of the body; a client that asks first (Expect: 100-continue) is
    not invited to send it."""
    ask_first = "Expect: 100-continue\r\n" if expect else ""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as connection:
        connection.sendall(
            f"POST /predict?filename=huge.jpg HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {LIMIT + 1}\r\n{ask_first}\r\n".encode()
        )  # and not one byte of the body
        first = b""
        while len(first) < 12:
            first = connection.recv(12, socket.MSG_PEEK)
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        body = json.loads(answer.read())
    assert first == b"HTTP/1.1 413", first  # not "100 Continue"
    assert answer.status == 413 and "huge.jpg" in body["detail"] and "10 MB" in body["detail"], body


def test_an_oversized_chunked_body_is_refused_while_it_is_read(service):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    chunks = (
        b"\xff\xd8" + bytes(1024 * 1024 - 2) if i == 0 else bytes(1024 * 1024) for i in range(uploads.MAX_UPLOAD_MB + 1)
    )
    connection.request("POST", "/predict", body=chunks, headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
    answer = connection.getresponse()
    body = json.loads(answer.read())
    connection.close()
    assert answer.status == 413 and "larger than the limit" in body["detail"], body


def test_too_many_files_are_refused(service):
    assert_problem(post_files(service.url, [(f"{i}.jpg", photo_bytes()) for i in range(17)]), 413, "at most 16")


@pytest.mark.parametrize(
    ("kind", "data", "words"),
    [("text/plain", b"hello", ["text/plain", "not accepted"]), ("image/svg+xml", b"<svg/>", ["image/svg+xml"])],
    ids=["text", "svg"],
)
def test_a_raw_body_of_another_content_type_is_refused(service, kind, data, words):
    assert_problem(post_image(service.url, data, kind, filename="bad.bin"), 415, *words, file="bad.bin")


def test_a_part_of_another_content_type_beside_a_good_one_is_named(service):
    body, headers = multipart(
        [("files", "good.jpg", "image/jpeg", photo_bytes()), ("files", "bad.jpg", "text/plain", b"hello")]
    )
    answer = request("POST", service.url + "/predict", body, headers)
    assert_problem(answer, 415, "text/plain", file="bad.jpg")
    assert "good.jpg" not in answer[1]["detail"]


def test_a_request_without_images_is_refused(service):
    body, headers = multipart([("note", "x.txt", None, b"")])
    body = body.replace(b'; filename="x.txt"', b"")  # a plain form field, not a file
    assert_problem(request("POST", service.url + "/predict", body, headers), 422, "no image")
    assert_problem(
        request("POST", service.url + "/predict", b"", {"Content-Type": "application/json"}), 415, "not accepted"
    )


@pytest.mark.parametrize(
    ("content_type", "body", "words"),
    [
        ("multipart/form-data", b"abc", ["no boundary"]),
        ("multipart/form-data; boundary=XX", b"garbage", ["cannot be parsed"]),
        (
            "multipart/form-data; boundary=XX",
            b'--XX\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\nabc',
            ["incomplete"],
        ),
    ],
    ids=["no-boundary", "garbage", "no-closing-boundary"],
)
def test_a_malformed_multipart_body_is_refused(service, content_type, body, words):
    assert_problem(request("POST", service.url + "/predict", body, {"Content-Type": content_type}), 422, *words)


def test_the_size_limit_is_set_by_an_environment_variable(tmp_path):
    with ServiceProcess(
        "onnx", env={"MUFFIN_V_CHIHUAHUA_MAX_UPLOAD_MB": "0.01"}, log=tmp_path / "service.log"
    ) as small:
        assert get(small.url + "/")[1]["max_upload_mb"] == 0.01
        photo = photo_bytes()
        assert len(photo) > 0.01 * 1024 * 1024
        assert_problem(post_image(small.url, photo, "image/jpeg", filename="big.jpg"), 413, "0.01 MB", file="big.jpg")
        assert_problem(post_files(small.url, [("big.jpg", photo)]), 413, "0.01 MB", file="big.jpg")


def test_the_neither_threshold_is_set_by_an_environment_variable(tmp_path):
    env = {"MUFFIN_V_CHIHUAHUA_NEITHER_THRESHOLD": "0.9999"}  # no class is that sure against its strongest rival
    with ServiceProcess("onnx", env=env, log=tmp_path / "service.log") as strict:
        assert get(strict.url + "/")[1]["neither_threshold"] == 0.9999
        status, body = post_files(strict.url, [("muffin.jpg", photo_bytes())])
        assert status == 200 and body["predictions"][0]["verdict"] == "neither", body


def test_a_bad_neither_threshold_stops_the_service_with_one_line(tmp_path):
    env = clean_env(MUFFIN_V_CHIHUAHUA_NEITHER_THRESHOLD="high")
    result = subprocess.run(
        [sys.executable, "-m", "muffin_v_chihuahua", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "muffin-v-chihuahua: MUFFIN_V_CHIHUAHUA_NEITHER_THRESHOLD='high': could not convert string to float: 'high'"
    )


def assert_busy(status: int, retry_after: str | None, body: dict) -> None:
    """503 with Retry-After and the service's JSON error body."""
    assert status == 503 and retry_after and retry_after.isdigit(), (status, retry_after, body)
    assert "busy" in body["detail"] and body["errors"], body


def test_requests_over_the_held_bytes_budget_get_503_with_retry_after_small_ones_200(tmp_path):
    """A budget of 0.1 MB set by the environment: a request that declares more is refused before it is read,
    a chunked one (no Content-Length) once more has arrived; a client that sends first reads the answer."""
    photo = photo_bytes()
    files = [(f"{i}.jpg", photo) for i in range(1 + int(0.1 * 1024 * 1024 / len(photo)))]
    with ServiceProcess("onnx", env={"MUFFIN_V_CHIHUAHUA_MAX_HELD_MB": "0.1"}, log=tmp_path / "service.log") as small:
        body, headers = multipart([("files", name, "image/jpeg", data) for name, data in files])
        for chunked in (False, True):
            connection = http.client.HTTPConnection("127.0.0.1", small.port, timeout=60)
            parts = (body[i : i + 16384] for i in range(0, len(body), 16384)) if chunked else body
            connection.request("POST", "/predict", parts, headers, encode_chunked=chunked)
            answer = connection.getresponse()
            assert_busy(answer.status, answer.getheader("Retry-After"), json.loads(answer.read()))
            connection.close()
        status, answer = post_files(small.url, [("small.jpg", photo)])
        assert status == 200 and [p["file"] for p in answer["predictions"]] == ["small.jpg"], answer
        assert get(small.url + "/")[0] == 200
        log = small.log()
    assert "Traceback" not in log and " 500 " not in log


def test_past_uvicorns_connection_limit_the_503_is_the_services_json_with_retry_after(tmp_path):
    """CONNECTIONS idle connections held open: uvicorn refuses the next request itself, with the service's JSON
    503 (Retry-After, Connection: close), and reads the body of a client that sends first (urllib, which says
    Connection: close) before it closes; counted as refused; once they close, the service answers again."""
    with ServiceProcess("onnx", log=tmp_path / "service.log") as busy:
        idle = [socket.create_connection(("127.0.0.1", busy.port), timeout=30) for _ in range(CONNECTIONS)]
        try:
            status, headers, body = urllib_answer(busy.url + "/")
            assert status == 503 and headers.get("Retry-After", "").isdigit(), (status, headers, body)
            assert headers.get("Connection") == "close" and headers.get("Content-Type") == "application/json"
            assert body["errors"] and "busy" in body["detail"] and "connections" in body["detail"], body
            posted = urllib_answer(busy.url + "/predict", bytes(2 * 1024 * 1024), {"Content-Type": "image/jpeg"})
            assert posted[0] == 503 and posted[2] == body, posted
        finally:
            for connection in idle:
                connection.close()
        wait_for(busy.url + "/")
        metrics = get(busy.url + "/metrics")[1]
        log = busy.log()
    assert 'muffin_v_chihuahua_requests_refused_total{reason="connection limit"} 2.0' in metrics, metrics
    assert "Exceeded concurrency limit." in log and "Traceback" not in log


def urllib_answer(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one request by urllib (which says Connection: close); a reset raises."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers or {}), timeout=60) as answer:
            return answer.status, {k.title(): v for k, v in answer.headers.items()}, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, {k.title(): v for k, v in refused.headers.items()}, json.loads(refused.read())


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


def test_serve_stopped_by_ctrl_c_exits_130_with_one_line_and_no_traceback(tmp_path):
    port, log = free_port(), tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "muffin_v_chihuahua", "serve", "--port", str(port), "--engine", "onnx"],
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=default_sigint,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/", process=process)
            process.send_signal(signal.SIGINT)
            status = process.wait(timeout=60)
        finally:
            stop(process)
    lines = log.read_text().splitlines()
    assert status == EXIT_INTERRUPTED == 130, lines
    assert "Traceback" not in "\n".join(lines) and "Shutting down" in "\n".join(lines), lines
    assert lines[-1] == "muffin-v-chihuahua: interrupted", lines


def test_the_page_and_the_cli_do_not_import_the_service_libraries():
    code = (
        "import sys, muffin_v_chihuahua.__main__, muffin_v_chihuahua.remote, muffin_v_chihuahua.classifier; "
        "print(sorted(m for m in ('fastapi', 'pydantic', 'muffin_v_chihuahua.service') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

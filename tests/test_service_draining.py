"""A refusal reaches a client still sending its body (muffin_v_chihuahua/service/draining.py), on a real service.

One service with small limits: 0.5 MB per image, 2 images, 1.5 MB of bodies held at once. A "filler" request
holds 1 MB of that budget (invited to send its body, it waits), so that the next request of 0.75 MB does not fit.
Asked: by urllib (the whole body sent before it reads, `Connection: close`) with a pause in the middle of its
body; and by hand over a socket, to see what arrives before a byte of the body is sent.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.servers import ServiceProcess

pytestmark = pytest.mark.service

MB = 1024 * 1024
LIMITS = {
    "MUFFIN_V_CHIHUAHUA_MAX_UPLOAD_MB": "0.5",
    "MUFFIN_V_CHIHUAHUA_MAX_FILES": "2",
    "MUFFIN_V_CHIHUAHUA_MAX_HELD_MB": "1.5",
}
FILLER_BYTES = 1 * MB  # fits the budget alone (and one request's limit, 2 x 0.5 MB + 64 KB)
REFUSED_BYTES = 3 * MB // 4  # fits alone, not beside the filler; over the 0.5 MB image limit too
# A pause in the middle of a body: longer than the second after which the service used to give up reading a
# refused body (then the client's next bytes met a closed connection: a reset), well within
# draining.IDLE_SECONDS.
PAUSE_SECONDS = 1.5


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with ServiceProcess("onnx", env=LIMITS, log=tmp_path_factory.mktemp("draining") / "service.log") as running:
        yield running
    log = running.log()
    assert "Traceback" not in log and " 500 " not in log


@contextlib.contextmanager
def full_budget(service: ServiceProcess) -> Iterator[None]:
    """For the with block, a multipart request holds FILLER_BYTES of the budget: it asks `Expect: 100-continue`,
    and the service invites it only once the service reads its body, after admission has reserved its bytes."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as filler:
        filler.sendall(raw_headers(FILLER_BYTES, "multipart/form-data; boundary=filler", "Expect: 100-continue"))
        invited = b""
        while not invited.endswith(b"\r\n\r\n"):  # nothing else comes before the body is sent
            invited += filler.recv(1024)
        assert invited.startswith(b"HTTP/1.1 100 "), invited
        yield
        filler.sendall(bytes(FILLER_BYTES))  # no boundary: its answer, once the test is done with the budget
        answer = http.client.HTTPResponse(filler)
        answer.begin()
        assert answer.status == 422, answer.read()


def raw_headers(length: int, content_type: str = "image/jpeg", *extra: str) -> bytes:
    lines = ["POST /predict HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}", f"Content-Length: {length}"]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


def pausing_body(length: int) -> Iterator[bytes]:
    """`length` zero bytes in 64 KB chunks, PAUSE_SECONDS of silence after the first 256 KB."""
    for sent in range(0, length, 64 * 1024):
        if sent == 256 * 1024:
            time.sleep(PAUSE_SECONDS)
        yield bytes(min(64 * 1024, length - sent))


def urllib_post(service: ServiceProcess, length: int) -> tuple[int, str | None, dict]:
    """POST a pausing body of `length` bytes with urllib (which says `Connection: close`): status, Retry-After,
    JSON body; a reset raises."""
    request = urllib.request.Request(
        service.url + "/predict?filename=paused.jpg",
        pausing_body(length),
        {"Content-Type": "image/jpeg", "Content-Length": str(length)},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.headers.get("Retry-After"), json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers.get("Retry-After"), json.loads(refused.read())


def test_urllib_pausing_in_a_body_refused_for_the_budget_reads_the_503_and_retry_after(service):
    with full_budget(service):
        status, retry_after, body = urllib_post(service, REFUSED_BYTES)
    assert status == 503 and retry_after and retry_after.isdigit(), (status, retry_after, body)
    assert "busy" in body["detail"] and body["errors"], body


def test_urllib_pausing_in_a_body_refused_for_its_size_reads_the_413(service):
    status, _, body = urllib_post(service, REFUSED_BYTES)
    assert status == 413 and "paused.jpg" in body["detail"] and "0.5 MB" in body["detail"], body


def read_answer(connection: socket.socket) -> tuple[bytes, http.client.HTTPResponse, dict]:
    """The answer on `connection`: its status line as it arrived, the response, its JSON body."""
    first = b""
    while len(first) < 12:
        first = connection.recv(12, socket.MSG_PEEK)
    answer = http.client.HTTPResponse(connection)
    answer.begin()
    return first, answer, json.loads(answer.read())


def test_a_client_that_expects_100_continue_is_refused_before_it_sends_its_body(service):
    """Not invited to send (no 100 Continue): the 503 comes first, and the connection is not kept for another
    request (the body the client held back must not be read as one)."""
    with full_budget(service), socket.create_connection(("127.0.0.1", service.port), timeout=30) as connection:
        connection.sendall(
            raw_headers(REFUSED_BYTES, "image/jpeg", "Expect: 100-continue")
        )  # and not one byte of the body
        first, answer, body = read_answer(connection)
    assert first == b"HTTP/1.1 503", first
    assert answer.getheader("Retry-After", "").isdigit() and answer.getheader("Connection") == "close"
    assert "busy" in body["detail"], body


def test_a_client_that_reads_while_it_sends_is_refused_before_its_body_then_keeps_its_connection(service):
    """The 503 comes from the Content-Length, before a byte of the body is read; the body sent after it is read
    and dropped, and the same connection then carries the next request."""
    with full_budget(service), socket.create_connection(("127.0.0.1", service.port), timeout=30) as connection:
        connection.sendall(raw_headers(REFUSED_BYTES))
        first, answer, body = read_answer(connection)
        assert first == b"HTTP/1.1 503" and answer.getheader("Retry-After", "").isdigit(), (first, body)
        assert answer.getheader("Connection") is None, answer.getheaders()
        connection.sendall(bytes(REFUSED_BYTES))
        connection.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _, livez, alive = read_answer(connection)
    assert livez.status == 200 and alive == {"status": "alive"}

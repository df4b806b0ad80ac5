"""Request bodies read in one place (muffin_v_chihuahua/service/bodies.py), on ASGI messages made by hand: a limit
kept from the Content-Length before a byte is read, else as the bytes arrive; multipart files and their refusals;
a refused body drained; the error answer's shape."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
from starlette.requests import Request

from muffin_v_chihuahua.service.bodies import (
    BadInput,
    Upload,
    check_type,
    declared_length,
    drain,
    media_type,
    read_image,
    read_limited,
    read_multipart,
    too_large,
)
from tests.servers import multipart

KB = 1024


class Arriving:
    """A body arriving in `chunks` (then, if asked, a client gone): the receive of a request, counting its calls."""

    def __init__(self, chunks: list[bytes], then_disconnect: bool = False):
        self.messages = [
            {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1 or then_disconnect}
            for index, chunk in enumerate(chunks or [b""])
        ]
        self.received = 0

    async def __call__(self) -> dict:
        self.received += 1
        return self.messages.pop(0) if self.messages else {"type": "http.disconnect"}

    def request(self, **headers: str) -> Request:
        encoded = [(name.replace("_", "-").lower().encode(), value.encode()) for name, value in headers.items()]
        return Request({"type": "http", "method": "POST", "path": "/", "headers": encoded}, self)


def refused(message: str) -> BadInput:
    return BadInput(413, [("x", message)])


def run(function, *args):
    # In a thread of its own: the session's Playwright (its sync API) keeps an event loop running in the main thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, function, *args).result()


def test_declared_length_is_a_number_or_none():
    assert declared_length({"content-length": "12"}) == 12
    assert declared_length({"content-length": "-1"}) is None and declared_length({}) is None


def test_too_large_says_the_size_when_known():
    assert too_large("the image", 10 * KB * KB, 11_534_336) == (
        "the image of 11,534,336 bytes is larger than the limit of 10 MB"
    )
    assert too_large("the request", KB * KB // 2) == "the request is larger than the limit of 0.5 MB"


def test_a_body_within_the_limit_is_read_whole():
    arriving = Arriving([b"ab", b"cd"])
    assert run(read_limited, arriving.request(content_length="4"), 4, "the image", refused) == b"abcd"


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read():
    arriving = Arriving([b"abcde"])
    with pytest.raises(BadInput, match="the image of 5 bytes is larger than the limit"):
        run(read_limited, arriving.request(content_length="5"), 4, "the image", refused)
    assert arriving.received == 0


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit():
    arriving = Arriving([b"ab", b"cde", b"never read"])
    with pytest.raises(BadInput, match=r"^the image is larger than the limit"):
        run(read_limited, arriving.request(transfer_encoding="chunked"), 4, "the image", refused)
    assert arriving.received == 2


def test_read_image_names_the_image():
    with pytest.raises(BadInput) as too_big:
        run(read_image, Arriving([b"abcde"]).request(), 4, "dog.jpg")
    assert too_big.value.status == 413 and too_big.value.errors[0][0] == "dog.jpg"


def test_drain_reads_the_rest_until_the_body_ends_or_the_limit():
    ending = Arriving([b"a", b"b", b"c"])
    run(drain, ending, 100, 5.0)
    assert ending.received == 3 and not ending.messages
    endless = Arriving([bytes(KB)] * 10)
    run(drain, endless, 2 * KB, 5.0)
    assert endless.received == 3  # past 2 KB read: the rest is not waited for
    gone = Arriving([b"a"], then_disconnect=True)
    run(drain, gone, 100, 5.0)
    assert gone.received == 2


def read_files(body: bytes, content_type: str, file_limit: int = 10 * KB, max_files: int = 2) -> list[Upload]:
    chunks = [body[i : i + 100] for i in range(0, len(body), 100)]
    return run(read_multipart, Arriving(chunks).request(content_type=content_type), file_limit, max_files)


def test_multipart_files_with_their_names_and_types_form_fields_dropped():
    body, headers = multipart(
        [("files", "a.jpg", "image/jpeg", b"A" * 300), ("note", "", None, b"hi"), ("files", "b.png", None, b"B")]
    )
    body = body.replace(b'; filename=""', b"")  # `note`: a plain form field, not a file
    uploads = read_files(body, headers["Content-Type"])
    assert [(u.name, u.content_type, bytes(u.data)) for u in uploads] == [
        ("a.jpg", "image/jpeg", b"A" * 300),
        ("b.png", "", b"B"),
    ]


@pytest.mark.parametrize(
    ("parts", "content_type", "status", "words"),
    [
        (None, "multipart/form-data", 422, "no boundary"),
        (b"garbage", "multipart/form-data; boundary=XX", 422, "cannot be parsed"),
        (
            b'--XX\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\nabc',
            "multipart/form-data; boundary=XX",
            422,
            "incomplete",
        ),
        ([("note", "", None, b"x")], None, 422, "no image in the request"),
        ([("files", f"{n}.jpg", None, b"x") for n in range(3)], None, 413, "at most 2 per request"),
        ([("files", "big.jpg", None, bytes(10 * KB + 1))], None, 413, "big.jpg: the image is larger than the limit"),
        ([("note", "", None, bytes(64 * KB + 1))], None, 413, "a form field is larger than 64 KB"),
    ],
    ids=["no-boundary", "garbage", "no-closing-boundary", "no-image", "too-many", "too-large", "large-field"],
)
def test_a_bad_multipart_body_is_refused(parts, content_type, status, words):
    if isinstance(parts, list):
        body, headers = multipart(parts)
        body, content_type = body.replace(b'; filename=""', b""), headers["Content-Type"]
    with pytest.raises(BadInput) as refusal:
        read_files(parts if isinstance(parts, bytes) else body if parts else b"", content_type)
    answer = json.loads(refusal.value.answer().body)
    assert refusal.value.status == status and words in answer["detail"], answer


def test_a_multipart_body_declared_over_the_request_limit_is_refused_before_it_is_read():
    arriving = Arriving([b"never read"])
    request = arriving.request(content_type="multipart/form-data; boundary=XX", content_length=str(100 * KB))
    with pytest.raises(BadInput, match=r"the request \(up to 2 images\) of 102,400 bytes"):
        run(read_multipart, request, KB, 2)
    assert arriving.received == 0


def test_content_types():
    assert media_type("Image/JPEG; charset=x") == "image/jpeg"
    check_type(Upload("a", "image/webp", b""))
    check_type(Upload("a", "application/octet-stream", b""))
    with pytest.raises(BadInput, match="text/plain is not an accepted image type"):
        check_type(Upload("a", "text/plain", b""))


def test_the_answer_names_each_file_and_carries_the_headers():
    answer = BadInput(422, [("a.jpg", "empty"), (None, "and more")], {"X-Why": "test"}).answer()
    assert answer.status_code == 422 and answer.headers["X-Why"] == "test"
    assert json.loads(answer.body) == {
        "detail": "a.jpg: empty; and more",
        "errors": [{"file": "a.jpg", "error": "empty"}, {"file": None, "error": "and more"}],
    }

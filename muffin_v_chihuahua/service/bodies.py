"""Reading request bodies, the one place that does: with a limit (refused from the Content-Length before a byte is
read, else as soon as the bytes pass it), multipart files or one raw image, and a refused body's rest drained.

Bad input never gives a 5xx: too large -> 413, not an image -> 415, a damaged image -> 422, each with a
JSON body naming the file and what is wrong (bad_input_answer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import python_multipart
from python_multipart.multipart import parse_options_header
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks
    from starlette.requests import Request
    from starlette.types import Receive

# Content types accepted for an image (a multipart part may also say application/octet-stream or nothing).
IMAGE_TYPES = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/tiff": "TIFF",
}
ACCEPTED = "image/jpeg, image/png, image/webp, image/gif, image/bmp or image/tiff"
UNTYPED = ("", "application/octet-stream")
MULTIPART_FIELDS = ("files", "file")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers, per request
FORM_FIELD_LIMIT = 64 * 1024  # a form field that is not a file (the body may carry some: they are dropped)


class BadInput(Exception):
    """A client error: the HTTP status, per file what is wrong, and the answer's own headers."""

    def __init__(self, status: int, errors: list[tuple[str | None, str]], headers: dict[str, str] | None = None):
        super().__init__(errors[0][1])
        self.status = status
        self.errors = errors
        self.headers = headers or {}

    def answer(self) -> JSONResponse:
        """{"detail": all that is wrong, "errors": [{"file", "error"}, ...]} with the status and headers."""
        errors = [{"file": name, "error": message} for name, message in self.errors]
        detail = "; ".join(f"{name}: {message}" if name else message for name, message in self.errors)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=self.status, headers=self.headers)


async def bad_input_answer(request: Request, error: Exception) -> JSONResponse:
    """The app's handler for BadInput (Overloaded too: admission.py)."""
    assert isinstance(error, BadInput)
    return error.answer()


@dataclass
class Upload:
    name: str
    content_type: str
    data: bytes | bytearray  # a multipart part's own buffer, not a copy: a 9 MB file is held once


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The body's length as its Content-Length header declares it, if that is a number."""
    declared = headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


def too_large(what: str, limit: int, size: int | None = None) -> str:
    """What a body or an image over its limit is told, e.g. "the image of 11,534,336 bytes is larger than the
    limit of 10 MB" (`size` when it is known)."""
    of_size = "" if size is None else f" of {size:,} bytes"
    return f"{what}{of_size} is larger than the limit of {limit / (1024 * 1024):.3g} MB"


def limited_chunks(
    request: Request, limit: int, what: str, refused: Callable[[str], Exception]
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; `refused(too_large(...))` is raised at once from a Content-Length over
    `limit` (before a byte is read), else as soon as more than `limit` bytes have arrived."""
    declared = declared_length(request.headers)
    if declared is not None and declared > limit:
        raise refused(too_large(what, limit, declared))
    return _chunks_up_to(request, limit, what, refused)


async def _chunks_up_to(
    request: Request, limit: int, what: str, refused: Callable[[str], Exception]
) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise refused(too_large(what, limit))
        yield chunk


async def read_limited(request: Request, limit: int, what: str, refused: Callable[[str], Exception]) -> bytes:
    """The whole body, at most `limit` bytes (see limited_chunks)."""
    body = bytearray()
    async for chunk in limited_chunks(request, limit, what, refused):
        body += chunk
    return bytes(body)


async def drain(receive: Receive, limit: int, idle_seconds: float) -> None:
    """Read the rest of a body and drop each chunk as it comes, up to `limit` bytes, until the client has sent
    nothing for `idle_seconds` or is gone."""
    discarded = 0
    with anyio.move_on_after(idle_seconds) as idle:
        while discarded <= limit:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            discarded += len(message.get("body", b""))
            idle.deadline = anyio.current_time() + idle_seconds


async def read_image(request: Request, limit: int, name: str) -> bytes:
    """One image as the raw body, refused (413, naming it) past `limit` bytes."""
    return await read_limited(request, limit, "the image", lambda message: BadInput(413, [(name, message)]))


async def read_multipart(request: Request, file_limit: int, max_files: int) -> list[Upload]:
    """The files of a multipart/form-data body, each refused (413) as soon as it passes `file_limit`."""
    chunks = limited_chunks(
        request,
        file_limit * max_files + MULTIPART_OVERHEAD,
        f"the request (up to {max_files} images)",
        lambda message: BadInput(413, [(None, message)]),
    )
    _, options = parse_options_header(request.headers["content-type"])
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadInput(422, [(None, "the multipart/form-data content type has no boundary")])
    files = _MultipartFiles(file_limit, max_files)
    try:
        parser = python_multipart.MultipartParser(boundary, files.callbacks())
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except BadInput:
        raise
    except Exception as error:  # python-multipart's parse errors
        raise BadInput(422, [(None, f"the multipart/form-data body cannot be parsed: {error}")]) from None
    if not files.ended:
        raise BadInput(422, [(None, "the multipart/form-data body is incomplete: it has no closing boundary")])
    if not files.uploads:
        raise BadInput(
            422, [(None, f"no image in the request: send files under the form field {MULTIPART_FIELDS[0]!r}")]
        )
    return files.uploads


class _MultipartFiles:
    """python-multipart's callbacks: the files of a body as its parts arrive, each refused as soon as it is too
    large, the files too many or a form field over FORM_FIELD_LIMIT."""

    def __init__(self, file_limit: int, max_files: int):
        self.file_limit, self.max_files = file_limit, max_files
        self.uploads: list[Upload] = []
        self.part: dict[str, Any] = {}
        self.ended = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.part = {"headers": {}, "field": b"", "value": b"", "data": bytearray()}  # a new buffer for each part

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part["field"] += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part["value"] += data[start:end]

    def on_header_end(self) -> None:
        part = self.part
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished(self) -> None:
        part = self.part
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        part["filename"] = (
            disposition.get(b"filename", b"").decode("utf-8", "replace") if b"filename" in disposition else None
        )
        part["is_file"] = part["filename"] is not None or part["name"] in MULTIPART_FIELDS
        if part["is_file"] and len(self.uploads) >= self.max_files:
            raise BadInput(413, [(None, f"too many images: at most {self.max_files} per request")])

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        if not part["is_file"]:
            if len(part["data"]) + end - start > FORM_FIELD_LIMIT:
                raise BadInput(413, [(part["name"] or None, "a form field is larger than 64 KB")])
            part["data"] += data[start:end]
            return
        part["data"] += data[start:end]
        if len(part["data"]) > self.file_limit:
            name = part["filename"] or part["name"]
            raise BadInput(413, [(name, too_large("the image", self.file_limit))])

    def on_part_end(self) -> None:
        part = self.part
        if part["is_file"]:
            name = part["filename"] or f"{part['name']}[{len(self.uploads)}]"
            kind = media_type(part["headers"].get(b"content-type", b"").decode("latin-1"))
            self.uploads.append(Upload(name, kind, part["data"]))

    def on_end(self) -> None:
        self.ended = True


def check_type(upload: Upload) -> None:
    kind = upload.content_type
    if kind in UNTYPED or kind in IMAGE_TYPES:
        return
    raise BadInput(415, [(upload.name, f"{kind} is not an accepted image type ({ACCEPTED})")])

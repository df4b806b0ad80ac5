"""Reading request bodies: multipart files or one raw image, each refused (BadInput) as soon as it is too large.

Bad input never gives a 5xx: too large -> 413, not an image -> 415, a damaged image -> 422, each with a
JSON body naming the file and what is wrong (see app.bad_input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import python_multipart
from fastapi import Request
from python_multipart.multipart import parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

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


class BadInput(Exception):
    """A client error: the HTTP status and, per file, what is wrong."""

    def __init__(self, status: int, errors: list[tuple[str | None, str]]):
        super().__init__(errors[0][1])
        self.status = status
        self.errors = errors


@dataclass
class Upload:
    name: str
    content_type: str
    data: bytes | bytearray  # a multipart part's own buffer, not a copy: a 9 MB file is held once


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _megabytes(limit: int) -> str:
    return f"{limit / (1024 * 1024):.3g} MB"


def _check_declared_length(request: Request, limit: int, name: str | None, what: str) -> None:
    """Refuse from the Content-Length header alone, before reading a byte of the body."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadInput(
            413, [(name, f"{what} of {int(declared):,} bytes is larger than the limit of {_megabytes(limit)}")]
        )


async def read_body(request: Request, limit: int, name: str) -> bytes:
    """The raw body, refused (413) from its Content-Length or as soon as more than `limit` bytes arrive."""
    _check_declared_length(request, limit, name, "the image")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadInput(413, [(name, f"the image is larger than the limit of {_megabytes(limit)}")])
    return bytes(body)


async def read_multipart(request: Request, file_limit: int, max_files: int) -> list[Upload]:
    """The files of a multipart/form-data body, each refused (413) as soon as it passes `file_limit`."""
    _check_declared_length(
        request, file_limit * max_files + MULTIPART_OVERHEAD, None, f"the request (up to {max_files} images)"
    )
    _, options = parse_options_header(request.headers["content-type"])
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadInput(422, [(None, "the multipart/form-data content type has no boundary")])
    uploads: list[Upload] = []
    part: dict[str, Any] = {}
    ended: list[bool] = []

    def on_part_begin() -> None:
        part.clear()
        part.update(headers={}, field=b"", value=b"", data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        part["filename"] = (
            disposition.get(b"filename", b"").decode("utf-8", "replace") if b"filename" in disposition else None
        )
        part["is_file"] = part["filename"] is not None or part["name"] in MULTIPART_FIELDS
        if part["is_file"] and len(uploads) >= max_files:
            raise BadInput(413, [(None, f"too many images: at most {max_files} per request")])

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not part["is_file"]:
            if len(part["data"]) + end - start > 64 * 1024:
                raise BadInput(413, [(part["name"] or None, "a form field is larger than 64 KB")])
            part["data"] += data[start:end]
            return
        part["data"] += data[start:end]
        if len(part["data"]) > file_limit:
            name = part["filename"] or part["name"]
            raise BadInput(413, [(name, f"the image is larger than the limit of {_megabytes(file_limit)}")])

    def on_part_end() -> None:
        if part["is_file"]:
            name = part["filename"] or f"{part['name']}[{len(uploads)}]"
            kind = media_type(part["headers"].get(b"content-type", b"").decode("latin-1"))
            uploads.append(Upload(name, kind, part["data"]))  # the next part gets a new buffer

    callbacks: MultipartCallbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": lambda: ended.append(True),
    }
    try:
        parser = python_multipart.MultipartParser(boundary, callbacks)
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BadInput:
        raise
    except Exception as error:  # python-multipart's parse errors
        raise BadInput(422, [(None, f"the multipart/form-data body cannot be parsed: {error}")]) from None
    if not ended:
        raise BadInput(422, [(None, "the multipart/form-data body is incomplete: it has no closing boundary")])
    if not uploads:
        raise BadInput(
            422, [(None, f"no image in the request: send files under the form field {MULTIPART_FIELDS[0]!r}")]
        )
    return uploads


def check_type(upload: Upload) -> None:
    kind = upload.content_type
    if kind in UNTYPED or kind in IMAGE_TYPES:
        return
    raise BadInput(415, [(upload.name, f"{kind} is not an accepted image type ({ACCEPTED})")])

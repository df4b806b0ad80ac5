"""The model as its own HTTP service: `muffin-v-chihuahua serve` (FastAPI on uvicorn, the [service] extra).

    GET  /          health: 200 with the model's identity once it is loaded, 503 {"status": "loading"} before
    GET  /card      the full model card
    POST /predict   images as multipart files (field `files`) or one image as the raw body -> verdicts
    GET  /docs      OpenAPI page (/openapi.json is the schema)

The model is loaded once, in a background thread started by the lifespan, so the port opens at once and
the health check tells an orchestrator the truth while the model loads. Decoding and inference run in
worker threads (never on the event loop), so a slow prediction never delays a health check.

Bad input never gives a 5xx: too large -> 413, not an image -> 415, a damaged image -> 422, each with a
JSON body naming the file and what is wrong.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import numpy as np
import python_multipart
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from python_multipart.multipart import parse_options_header

from muffin_v_chihuahua import __version__, cpus, engines, images
from muffin_v_chihuahua.classifier import Classifier, Prediction

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

T = TypeVar("T")

# Per-image size limit in MB (default: the page's upload limit). It can only lower images.MAX_UPLOAD_MB,
# above which the decoder itself refuses a file.
MAX_UPLOAD_MB_VARIABLE = "MUFFIN_V_CHIHUAHUA_MAX_UPLOAD_MB"
# How many images one request may carry (default MAX_FILES); each is held in memory until it is decoded.
MAX_FILES_VARIABLE = "MUFFIN_V_CHIHUAHUA_MAX_FILES"
MAX_FILES = 16
# FOR TESTS ONLY: seconds to sleep before loading the model, so that a test can watch the health check
# answer 503 "loading" before 200 (loading the ONNX model alone takes well under a second).
TEST_LOAD_DELAY_VARIABLE = "MUFFIN_V_CHIHUAHUA_TEST_LOAD_DELAY_SECONDS"

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
# A refused body's rest is read and dropped (see _discard_rest) until none of it has arrived for this long.
DISCARD_IDLE_SECONDS = 1.0

log = logging.getLogger("uvicorn.error")  # uvicorn's configured logger: our lines appear beside its own


class ConfigurationError(ValueError):
    """A setting (environment variable) with a value the service cannot use; the message says which."""


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
    data: bytes


# ----- the model, loaded once in the background ----------------------------------------------------


class Model:
    """The Classifier and its identity, filled in by a background thread; `classifier` is None until then."""

    def __init__(self, engine: str, load_delay: float = 0.0):
        self.requested_engine = engine
        self.load_delay = load_delay
        self.classifier: Classifier | None = None
        self.identity: dict[str, Any] = {}
        self.error: str | None = None
        self.started = time.monotonic()

    def load(self) -> None:
        try:
            if self.load_delay:
                log.warning(
                    "%s=%s: waiting before loading the model (tests only)", TEST_LOAD_DELAY_VARIABLE, self.load_delay
                )
                time.sleep(self.load_delay)
            classifier = Classifier(engine=self.requested_engine)
            # One prediction before the health check turns 200: the model answers (and the keras engine's
            # tf.function is traced now, not on a client's first request).
            width, height = classifier.input_size
            classifier.predict([np.zeros((height, width, 3), dtype=np.float32)])
            card = classifier.card
            model_file = card["files"][classifier.engine]["file"]
            self.identity = {
                "backbone": card["backbone"],
                "engine": classifier.engine,
                "model_version": card["version"],
                "model_built_at": card.get("built_at"),
                "model_file": model_file,
                "model_sha256": classifier.model_sha256,
                "input_size": list(classifier.input_size),
                "class_names": list(card["class_names"]),
            }
            self.classifier = classifier  # last: from here on requests are served
            log.info("model loaded in %.1f s: %s", time.monotonic() - self.started, self.identity)
        except Exception as error:  # reported by the health check, which stays 503
            self.error = f"{type(error).__name__}: {error}"
            log.exception("the model could not be loaded")


# ----- response shapes (for the OpenAPI schema) -----------------------------------------------------


class Health(BaseModel):
    status: str  # "ok"
    app_version: str
    backbone: str
    engine: str
    model_version: str
    model_built_at: str | None = None
    model_file: str
    model_sha256: str  # of the model file the engine runs, checked against the card when it was loaded
    input_size: list[int]  # (width, height)
    class_names: list[str]
    max_upload_mb: float
    max_files: int


class NotReady(BaseModel):
    status: str  # "loading" or "failed"
    detail: str


class LabelOut(BaseModel):
    name: str
    probability: float


class PredictionOut(BaseModel):
    file: str
    verdict: str  # a class name ("muffin", "chihuahua") or "neither"
    probability: float | None  # the head's, of the verdict; null for "neither", which the head cannot judge
    imagenet: list[LabelOut]  # the top-3 ImageNet labels, most likely first
    evidence: float  # ImageNet's probability on what the dataset's photos of the head's class look like
    reason: str | None = None  # why the verdict is "neither"


class Predictions(BaseModel):
    engine: str
    model_sha256: str
    predictions: list[PredictionOut]


class FileError(BaseModel):
    file: str | None
    error: str


class Problem(BaseModel):
    detail: str
    errors: list[FileError]


PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                "required": ["files"],
            }
        },
        **{
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("image/jpeg", "image/png", "image/webp", "image/gif")
        },
    },
}


# ----- the application ------------------------------------------------------------------------------


def create_app(
    engine: str | None = None,
    *,
    max_upload_mb: float | None = None,
    max_files: int | None = None,
    load_delay: float | None = None,
) -> FastAPI:
    """The service; unset arguments come from the environment (see the *_VARIABLE names above)."""
    engine = engine or os.environ.get(engines.ENGINE_VARIABLE, "auto")
    if max_upload_mb is None:
        max_upload_mb = _setting(MAX_UPLOAD_MB_VARIABLE, float, float(images.MAX_UPLOAD_MB))
    if not 0 < max_upload_mb <= images.MAX_UPLOAD_MB:
        raise ConfigurationError(
            f"{MAX_UPLOAD_MB_VARIABLE} must be more than 0 and at most {images.MAX_UPLOAD_MB} (MB), not {max_upload_mb}"
        )
    if max_files is None:
        max_files = _setting(MAX_FILES_VARIABLE, int, MAX_FILES)
    if max_files < 1:
        raise ConfigurationError(f"{MAX_FILES_VARIABLE} must be at least 1, not {max_files}")
    if load_delay is None:
        load_delay = _setting(TEST_LOAD_DELAY_VARIABLE, float, 0.0)
    max_bytes = int(max_upload_mb * 1024 * 1024)
    model = Model(engine, load_delay)
    # Inference and decoding run in worker threads, as many at once as this process has cores: more only
    # share the same cores (each ONNX Runtime call already uses them all) and hold more images. Measured on
    # 2 cores, 8 clients: 1 at once 24 req/s, 2 at once 32 req/s, 4 at once 28 req/s with twice the p99.
    workers = anyio.CapacityLimiter(cpus.usable())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A daemon thread: the port opens at once, and stopping during a load does not wait for it.
        threading.Thread(target=model.load, name="model-loader", daemon=True).start()
        yield

    app = FastAPI(
        title="Muffin or chihuahua",
        version=__version__,
        description="Tells a muffin from a chihuahua in a photo. `GET /` is the health check; `POST /predict` classifies images.",
        lifespan=lifespan,
    )
    app.state.model = model

    def not_ready() -> JSONResponse:
        if model.error:
            return JSONResponse(
                {"status": "failed", "detail": f"the model could not be loaded: {model.error}"}, status_code=503
            )
        return JSONResponse(
            {"status": "loading", "detail": f"the model is loading ({time.monotonic() - model.started:.0f} s so far)"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, error: BadInput) -> JSONResponse:
        errors = [{"file": name, "error": message} for name, message in error.errors]
        detail = "; ".join(f"{name}: {message}" if name else message for name, message in error.errors)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=error.status)

    @app.get(
        "/", response_model=Health, responses={503: {"model": NotReady, "description": "the model is not loaded (yet)"}}
    )
    async def health() -> dict[str, Any] | JSONResponse:
        """The health check: 200 once the model answers, 503 while it loads (or if it failed to load)."""
        if model.classifier is None:
            return not_ready()
        return {
            "status": "ok",
            "app_version": __version__,
            **model.identity,
            "max_upload_mb": max_upload_mb,
            "max_files": max_files,
        }

    @app.get("/card", response_model=None, responses={503: {"model": NotReady}})
    async def card() -> dict[str, Any] | JSONResponse:
        """The full model card (as built with the model), for front ends that show it."""
        if model.classifier is None:
            return not_ready()
        return model.classifier.card

    @app.post(
        "/predict",
        response_model=Predictions,
        openapi_extra={"requestBody": PREDICT_BODY},
        responses={
            413: {"model": Problem, "description": "an image or the request is too large, or too many images"},
            415: {"model": Problem, "description": "not an image (content type or content)"},
            422: {
                "model": Problem,
                "description": "an image that cannot be decoded: truncated, corrupt, too many pixels",
            },
            503: {"model": NotReady, "description": "the model is still loading"},
        },
    )
    async def predict(
        request: Request,
        filename: str = Query("request body", description="the name to report for a raw-body image"),
    ) -> dict[str, Any] | JSONResponse:
        """Classify images: multipart/form-data files under `files` (up to the service's `max_files`), or one
        image as the raw body with its content type (image/jpeg, image/png, image/webp, image/gif, ...)."""
        if model.classifier is None:
            return not_ready()
        classifier = model.classifier
        content_type = _media_type(request.headers.get("content-type", ""))
        try:
            if content_type == "multipart/form-data":
                uploads = await _read_multipart(request, max_bytes, max_files)
            elif content_type.startswith("image/"):
                uploads = [Upload(filename, content_type, await _read_body(request, max_bytes, filename))]
            else:
                shown = content_type or "no content type"
                raise BadInput(
                    415,
                    [
                        (
                            filename,
                            f"{shown} is not accepted: send multipart/form-data files under "
                            f"{MULTIPART_FIELDS[0]!r} or one image as the body ({ACCEPTED})",
                        )
                    ],
                )
        except BadInput:
            await _discard_rest(request, 2 * max_bytes + MULTIPART_OVERHEAD)
            raise
        for upload in uploads:
            _check_type(upload)
        predictions = await anyio.to_thread.run_sync(_classify, classifier, uploads, limiter=workers)
        return {
            "engine": model.identity["engine"],
            "model_sha256": model.identity["model_sha256"],
            "predictions": [
                {"file": upload.name, **prediction.to_dict()}
                for upload, prediction in zip(uploads, predictions, strict=True)
            ],
        }

    return app


def _setting(variable: str, kind: Callable[[str], T], default: T) -> T:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(f"{variable}={value!r} is not a valid {kind.__name__}") from None


def _media_type(header: str) -> str:
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


async def _discard_rest(request: Request, limit: int) -> None:
    """Read what is left of a refused body and drop it, so that a client that sends its whole body before it
    reads the answer (urllib, requests, httpx) reads our 413 or 415 rather than a connection reset. Not when
    the body is larger than `limit`, nor when the client waits for the answer before sending (`Expect:
    100-continue`, as curl does), nor once no more of it has arrived for DISCARD_IDLE_SECONDS."""
    if request.headers.get("expect", "").lower() == "100-continue":
        return
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return
    stream, discarded = request.stream(), 0
    try:
        while discarded <= limit:  # a chunked body declares no length
            with anyio.fail_after(DISCARD_IDLE_SECONDS):
                discarded += len(await stream.__anext__())
    except Exception:  # the end of the body (or it was read already), a silent client, or one that went away
        return


async def _read_body(request: Request, limit: int, name: str) -> bytes:
    """The raw body, refused (413) from its Content-Length or as soon as more than `limit` bytes arrive."""
    _check_declared_length(request, limit, name, "the image")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadInput(413, [(name, f"the image is larger than the limit of {_megabytes(limit)}")])
    return bytes(body)


async def _read_multipart(request: Request, file_limit: int, max_files: int) -> list[Upload]:
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
            kind = _media_type(part["headers"].get(b"content-type", b"").decode("latin-1"))
            uploads.append(Upload(name, kind, bytes(part["data"])))

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


def _check_type(upload: Upload) -> None:
    kind = upload.content_type
    if kind in UNTYPED or kind in IMAGE_TYPES:
        return
    raise BadInput(415, [(upload.name, f"{kind} is not an accepted image type ({ACCEPTED})")])


# Not an image at all: 415. Empty, truncated, corrupt or too many pixels: 422.
STATUS_BY_KIND = {"not-an-image": 415, "too-large": 413, "empty": 422, "corrupt": 422, "too-many-pixels": 422}


def _classify(classifier: Classifier, uploads: list[Upload]) -> list[Prediction]:
    """In a worker thread: decode every upload (all of them, so that every bad file is named), then predict."""
    arrays: list[np.ndarray] = []
    errors: list[tuple[str | None, str]] = []
    kinds: list[str] = []
    for upload in uploads:
        try:
            arrays.append(images.to_array(images.open_rgb(upload.data), classifier.input_size))
        except images.ImageError as error:
            errors.append((upload.name, str(error)))
            kinds.append(error.kind)
        upload.data = b""  # the decoded array is all that is needed from here on
    if errors:
        raise BadInput(STATUS_BY_KIND[kinds[0]], errors)  # the first bad file's status
    return classifier.predict(arrays)


def run(app: FastAPI, host: str, port: int) -> None:
    """Serve `app` (see create_app) until interrupted: SIGINT or SIGTERM stop it gracefully."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)

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

import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from muffin_v_chihuahua import __version__, cpus, engines, images
from muffin_v_chihuahua.classifier import Classifier, Prediction
from muffin_v_chihuahua.service import inference_protocol
from muffin_v_chihuahua.service.bodies import (
    ACCEPTED,
    MULTIPART_FIELDS,
    MULTIPART_OVERHEAD,
    BadInput,
    Upload,
    check_type,
    discard_rest,
    media_type,
    read_body,
    read_multipart,
)
from muffin_v_chihuahua.service.loading import Model
from muffin_v_chihuahua.service.schemas import PREDICT_BODY, Health, NotReady, Predictions, Problem
from muffin_v_chihuahua.service.settings import (
    MAX_FILES,
    MAX_FILES_VARIABLE,
    MAX_UPLOAD_MB_VARIABLE,
    TEST_LOAD_DELAY_VARIABLE,
    ConfigurationError,
    setting,
)


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
        max_upload_mb = setting(MAX_UPLOAD_MB_VARIABLE, float, float(images.MAX_UPLOAD_MB))
    if not 0 < max_upload_mb <= images.MAX_UPLOAD_MB:
        raise ConfigurationError(
            f"{MAX_UPLOAD_MB_VARIABLE} must be more than 0 and at most {images.MAX_UPLOAD_MB} (MB), not {max_upload_mb}"
        )
    if max_files is None:
        max_files = setting(MAX_FILES_VARIABLE, int, MAX_FILES)
    if max_files < 1:
        raise ConfigurationError(f"{MAX_FILES_VARIABLE} must be at least 1, not {max_files}")
    if load_delay is None:
        load_delay = setting(TEST_LOAD_DELAY_VARIABLE, float, 0.0)
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
        content_type = media_type(request.headers.get("content-type", ""))
        try:
            if content_type == "multipart/form-data":
                uploads = await read_multipart(request, max_bytes, max_files)
            elif content_type.startswith("image/"):
                uploads = [Upload(filename, content_type, await read_body(request, max_bytes, filename))]
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
            await discard_rest(request, 2 * max_bytes + MULTIPART_OVERHEAD)
            raise
        for upload in uploads:
            check_type(upload)
        predictions = await anyio.to_thread.run_sync(_classify, classifier, uploads, limiter=workers)
        return {
            "engine": model.identity["engine"],
            "model_sha256": model.identity["model_sha256"],
            "predictions": [
                {"file": upload.name, **prediction.to_dict()}
                for upload, prediction in zip(uploads, predictions, strict=True)
            ],
        }

    app.include_router(inference_protocol.router(model, max_bytes=max_bytes, max_files=max_files, workers=workers))
    return app


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

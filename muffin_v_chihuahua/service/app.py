"""The model as its own HTTP service: `muffin-v-chihuahua serve` (FastAPI on uvicorn, the [service] extra).

    GET  /          health: 200 with the model's identity once it is loaded, 503 {"status": "loading"} before
    GET  /readyz    the same (readiness probe); GET /livez 200 whenever the process answers (liveness probe)
    GET  /metrics   Prometheus metrics (metrics.py names them)
    GET  /card      the full model card
    POST /predict   images as multipart files (field `files`) or one image as the raw body -> verdicts
    GET  /docs      OpenAPI page (/openapi.json is the schema)

The model is loaded once, in a background thread started by the lifespan, so the port opens at once and
the health check tells an orchestrator the truth while the model loads. Decoding and inference run in
worker threads (never on the event loop), so a slow prediction never delays a health check.

Bad input never gives a 5xx: too large -> 413, not an image -> 415, a damaged image -> 422, each with a
JSON body naming the file and what is wrong.

Every request is observed by one middleware (observing.py): an X-Request-ID, metrics, one log line. A model
that fails to load makes run() stop the server, so that the process exits and a supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from muffin_v_chihuahua import __version__, cpus
from muffin_v_chihuahua.service import admission, draining, inference_protocol, observing
from muffin_v_chihuahua.service.bodies import (
    ACCEPTED,
    MULTIPART_FIELDS,
    BadInput,
    Upload,
    check_type,
    media_type,
    read_body,
    read_multipart,
)
from muffin_v_chihuahua.service.inference import Undecodable, classify
from muffin_v_chihuahua.service.loading import Model
from muffin_v_chihuahua.service.metrics import Metrics
from muffin_v_chihuahua.service.schemas import PREDICT_BODY, Health, NotReady, Predictions, Problem
from muffin_v_chihuahua.service.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """The service, made with `settings` (Settings.from_environment(): what the environment says)."""
    observing.configure(settings.log_format)
    max_bytes, max_files = settings.max_bytes, settings.max_files
    model = Model(
        settings.engine, settings.load_delay, settings.model_dir, settings.precision, settings.neither_threshold
    )
    metrics = Metrics(lambda: {**model.identity} if model.classifier is not None else None, __version__)
    # Inference and decoding run in worker threads, as many at once as this process has cores: more only
    # share the same cores (each ONNX Runtime call already uses them all) and hold more images. Measured on
    # 2 cores, 8 clients: 1 at once 24 req/s, 2 at once 32 req/s, 4 at once 28 req/s with twice the p99.
    cpu_count, cpu_reason = cpus.limit()  # the engine sizes its threads by the same count
    workers = anyio.CapacityLimiter(cpu_count)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("uvicorn.error").info(
            "CPUs: %d (%s): %d inference workers, as many ONNX Runtime threads", cpu_count, cpu_reason, cpu_count
        )
        # A daemon thread: the port opens at once, and stopping during a load does not wait for it.
        threading.Thread(target=model.load, name="model-loader", daemon=True).start()
        yield

    # FastAPIOffline: FastAPI whose /docs and /redoc take their scripts from this service, not from a CDN that a
    # machine without internet (or a locked-down cluster) cannot reach.
    app = FastAPIOffline(
        title="Muffin or chihuahua",
        version=__version__,
        description="Tells a muffin from a chihuahua in a photo. `GET /` is the health check; `POST /predict` classifies images.",
        lifespan=lifespan,
    )
    app.state.model = model
    # Bodies are held until decoded: the bytes of all requests at once are bounded, past it 503 (admission.py).
    request_limit = settings.request_limit
    held_bytes = (
        int(settings.max_held_mb * 2**20)
        if settings.max_held_mb is not None
        else admission.budget(request_limit, cpu_count)
    )
    admission.install(app, held_bytes, request_limit, lambda: metrics.refused("memory budget"))
    # Outside admission: a refused body's rest is read after its reservation is released.
    largest_body = max(request_limit, inference_protocol.body_limit(max_bytes, max_files))
    app.add_middleware(draining.FinishReading, limit=largest_body)
    # What uvicorn answers past its limit_concurrency, without this app (run() hands it over): the same JSON 503.
    app.state.past_the_limit = draining.FinishReading(
        admission.refusing_every_request(lambda: metrics.refused("connection limit")), limit=largest_body
    )
    app.state.metrics = metrics
    app.add_middleware(observing.Observe, metrics=metrics)

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
            "max_upload_mb": settings.max_upload_mb,
            "max_files": max_files,
        }

    # ----- probes and metrics (for orchestrators and Prometheus) -----
    @app.get("/livez")
    async def livez() -> dict[str, str]:
        """The liveness probe: 200 whenever the process can answer, model loaded or not."""
        return {"status": "alive"}

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": NotReady, "description": "the model is not loaded (yet), or failed to load"}},
    )
    async def readyz() -> dict[str, Any] | JSONResponse:
        """The readiness probe, as `GET /`: 200 once the model answers, 503 while it loads or if it failed."""
        return await health()

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics, in its text format."""
        return Response(metrics.render(), media_type=metrics.content_type)

    # ----- the model -----
    @app.get("/card", response_model=None, responses={503: {"model": NotReady}})
    async def card() -> dict[str, Any] | JSONResponse:
        """The full model card (as built with the model), for front ends that show it."""
        if model.classifier is None:
            return not_ready()
        return model.classifier.card

    @app.post(
        "/predict",
        response_model=Predictions,
        response_model_exclude_unset=True,  # the heatmap keys only when asked for: to_dict leaves them out
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
        heatmap: bool = Query(False, description="add each photo's heatmap: where the model looked"),
    ) -> dict[str, Any] | JSONResponse:
        """Classify images: multipart/form-data files under `files` (up to the service's `max_files`), or one
        image as the raw body with its content type (image/jpeg, image/png, image/webp, image/gif, ...)."""
        if model.classifier is None:
            return not_ready()
        classifier = model.classifier
        content_type = media_type(request.headers.get("content-type", ""))
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
        for upload in uploads:
            check_type(upload)
        try:
            predictions = await anyio.to_thread.run_sync(
                classify, classifier, uploads, metrics.inferred, heatmap, limiter=workers
            )
        except Undecodable as undecodable:
            status = STATUS_BY_KIND[undecodable.errors[0][1].kind]  # the first bad file's
            raise BadInput(status, [(name, str(error)) for name, error in undecodable.errors]) from None
        metrics.predicted(prediction.verdict for prediction in predictions)
        observing.note(request, (prediction.verdict for prediction in predictions))
        return {
            "engine": model.identity["engine"],
            "model_sha256": model.identity["model_sha256"],
            "predictions": [
                {"file": upload.name, **prediction.to_dict()}
                for upload, prediction in zip(uploads, predictions, strict=True)
            ],
        }

    app.include_router(
        inference_protocol.router(model, metrics, max_bytes=max_bytes, max_files=max_files, workers=workers)
    )
    return app


# Connections plus tasks at once (idle keep-alive connections count) past which uvicorn refuses requests (503).
CONNECTIONS = 256
# Not an image at all: 415. Empty, truncated, corrupt or too many pixels: 422.
STATUS_BY_KIND = {"not-an-image": 415, "too-large": 413, "empty": 422, "corrupt": 422, "too-many-pixels": 422}


def run(app: FastAPI, host: str, port: int) -> str | None:
    """Serve `app` (see create_app) until interrupted (SIGINT or SIGTERM stop it gracefully) or until its model
    fails to load; returns why the model failed, or None."""
    import uvicorn
    from uvicorn.protocols.http import h11_impl

    # uvicorn answers past limit_concurrency itself, without the app, in plain text, and has no setting for it:
    # its h11 protocol looks that answer up by this name each time, so the service's JSON 503 takes its place.
    h11_impl.service_unavailable = app.state.past_the_limit  # type: ignore[attr-defined]  # imported there, not exported
    # Our middleware logs one line per request: uvicorn's access log would say the same again.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",  # the protocol whose answer past the limit is ours (httptools is not installed anyway)
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
        # Memory is bounded by admission.py's budget (503 + Retry-After), not by these: limit_concurrency is a
        # backstop against a flood of connections, far above the few requests the budget admits; each
        # connection past the budget holds only uvicorn's 64 KB buffer.
        limit_concurrency=CONNECTIONS,
        backlog=256,  # connections the kernel queues before accept (their bytes are the kernel's, not ours)
        timeout_keep_alive=5,  # s: an idle keep-alive connection is closed soon, so idle ones do not fill the limit
    )
    server = uvicorn.Server(config)
    model: Model = app.state.model

    def stop_if_the_model_fails() -> None:
        model.done.wait()
        if model.error:
            logging.getLogger("uvicorn.error").error("the model could not be loaded, stopping: %s", model.error)
            server.should_exit = True

    threading.Thread(target=stop_if_the_model_fails, name="model-watcher", daemon=True).start()
    server.run()
    return model.error

"""The model as its own HTTP service: `muffin-v-chihuahua serve` (FastAPI on uvicorn, the [service] extra), made
from its parts: the routes of health.py, predict.py and inference_protocol.py (the Open Inference Protocol),
admission, draining and observing around them. GET /docs is the OpenAPI page (/openapi.json the schema).

The model is loaded once, in a background thread started by the lifespan, so the port opens at once and
the health check tells the truth while the model loads. A model that fails to load makes run() stop the
server, so that the process exits and a supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from muffin_v_chihuahua import __version__, cpus
from muffin_v_chihuahua.classifier import Classifier
from muffin_v_chihuahua.service import admission, draining, health, inference_protocol, observing, predict
from muffin_v_chihuahua.service.bodies import BadInput, bad_input_answer
from muffin_v_chihuahua.service.inference_protocol_codec import body_limit
from muffin_v_chihuahua.service.loading import ModelLoader, ModelNotReady, load_classifier, not_ready_answer
from muffin_v_chihuahua.service.metrics import Metrics
from muffin_v_chihuahua.service.settings import Settings


def create_app(settings: Settings, load_model: Callable[[Settings], Classifier] = load_classifier) -> FastAPI:
    """The service, made with `settings` (Settings.from_environment(): what the environment says); its model
    is load_model(settings), called once in a background thread."""
    observing.configure(settings.log_format)
    model = ModelLoader(partial(load_model, settings))
    metrics = Metrics(lambda: {**model.identity} if model.classifier is not None else None, __version__)
    # Inference and decoding run in worker threads, as many at once as this process has cores: more only
    # share the same cores (each ONNX Runtime call already uses them all) and hold more images. Measured on
    # 2 cores, 8 clients: 1 at once 24 req/s, 2 at once 32 req/s, 4 at once 28 req/s with twice the p99.
    cpu_count, cpu_reason = cpus.limit()  # the engine sizes its threads by the same count
    workers = anyio.CapacityLimiter(cpu_count)
    # FastAPIOffline: FastAPI whose /docs and /redoc take their scripts from this service, not from a CDN that a
    # machine without internet (or a locked-down cluster) cannot reach.
    app = FastAPIOffline(
        title="Muffin or chihuahua",
        version=__version__,
        description="Tells a muffin from a chihuahua in a photo. `GET /` is the health check; `POST /predict` classifies images.",
        lifespan=partial(loading_in_the_background, model, cpu_count, cpu_reason),
    )
    app.state.model = model  # where ready_model (the routes' dependency) and run() find it
    # Bodies are held until decoded: the bytes of all requests at once are bounded, past it 503 (admission.py).
    held_bytes = (
        int(settings.max_held_mb * 2**20)
        if settings.max_held_mb is not None
        else admission.budget(settings.request_limit, cpu_count)
    )
    admission.install(app, held_bytes, settings.request_limit, lambda: metrics.refused("memory budget"))
    # Outside admission: a refused body's rest is read after its reservation is released.
    largest_body = max(settings.request_limit, body_limit(settings.max_bytes, settings.max_files))
    app.add_middleware(draining.FinishReading, limit=largest_body)
    # What uvicorn answers past its limit_concurrency, without this app (run() hands it over): the same JSON 503.
    app.state.past_the_limit = draining.FinishReading(
        admission.refusing_every_request(lambda: metrics.refused("connection limit")), limit=largest_body
    )
    app.add_middleware(observing.Observe, metrics=metrics)
    app.add_exception_handler(BadInput, bad_input_answer)
    app.add_exception_handler(ModelNotReady, not_ready_answer)
    app.include_router(health.router(model, metrics, settings))
    app.include_router(predict.router(metrics, settings, workers))
    app.include_router(
        inference_protocol.router(metrics, max_bytes=settings.max_bytes, max_files=settings.max_files, workers=workers)
    )
    return app


@asynccontextmanager
async def loading_in_the_background(
    model: ModelLoader, cpu_count: int, cpu_reason: str, app: FastAPI
) -> AsyncIterator[None]:
    """The app's lifespan: the model's load starts in a daemon thread (the port opens at once, and stopping during
    a load does not wait for it)."""
    logging.getLogger("uvicorn.error").info(
        "CPUs: %d (%s): %d inference workers, as many ONNX Runtime threads", cpu_count, cpu_reason, cpu_count
    )
    threading.Thread(target=model.load, name="model-loader", daemon=True).start()
    yield


# Connections plus tasks at once (idle keep-alive connections count) past which uvicorn refuses requests (503).
CONNECTIONS = 256


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
    model: ModelLoader = app.state.model

    def stop_if_the_model_fails() -> None:
        model.done.wait()
        if model.error:
            logging.getLogger("uvicorn.error").error("the model could not be loaded, stopping: %s", model.error)
            server.should_exit = True

    threading.Thread(target=stop_if_the_model_fails, name="model-watcher", daemon=True).start()
    server.run()
    return model.error

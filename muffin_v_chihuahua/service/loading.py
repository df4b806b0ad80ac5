"""The model, loaded once in a background thread: the port opens at once, and health checks say the truth.

Routes that need the model take it as a ReadyModel (the dependency ready_model): until it is loaded, ModelNotReady, which
the app answers 503 (not_ready_answer; the Open Inference Protocol's routes in their own shape).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import Depends
from starlette.requests import Request
from starlette.responses import JSONResponse

from muffin_v_chihuahua.classifier import Classifier
from muffin_v_chihuahua.service.settings import Settings

log = logging.getLogger("uvicorn.error")  # uvicorn's configured logger: our lines appear beside its own


def load_classifier(settings: Settings) -> Classifier:
    """The model the settings name (create_app's default loader)."""
    return Classifier(settings.engine, settings.model_dir, settings.precision, settings.neither_threshold)


class ModelNotReady(Exception):
    """The model is still loading (`failed` False: worth retrying) or could not be loaded."""

    def __init__(self, detail: str, failed: bool):
        super().__init__(detail)
        self.detail = detail
        self.failed = failed
        self.headers = {} if failed else {"Retry-After": "1"}


async def not_ready_answer(request: Request, error: Exception) -> JSONResponse:
    """The app's handler for ModelNotReady: 503 {"status": "loading" or "failed", "detail"}."""
    assert isinstance(error, ModelNotReady)
    status = "failed" if error.failed else "loading"
    return JSONResponse({"status": status, "detail": error.detail}, status_code=503, headers=error.headers)


class ModelLoader:
    """The Classifier and its identity, filled in by a background thread; `classifier` is None until then."""

    def __init__(self, load_model: Callable[[], Classifier]):
        self.load_model = load_model
        self.classifier: Classifier | None = None
        self.identity: dict[str, Any] = {}
        self.error: str | None = None
        self.started = time.monotonic()
        self.done = threading.Event()  # set once the load has succeeded or failed (see `error`)

    def ready(self) -> Classifier:
        """The loaded Classifier; ModelNotReady until then."""
        if self.classifier is not None:
            return self.classifier
        if self.error:
            raise ModelNotReady(f"the model could not be loaded: {self.error}", failed=True)
        raise ModelNotReady(f"the model is loading ({time.monotonic() - self.started:.0f} s so far)", failed=False)

    def load(self) -> None:
        try:
            classifier = self.load_model()
            # One prediction before the health check turns 200: the model answers (and the keras engine's
            # tf.function is traced now, not on a client's first request).
            width, height = classifier.input_size
            classifier.predict([np.zeros((height, width, 3), dtype=np.float32)])
            card = classifier.card
            self.identity = {
                "backbone": card.backbone,
                "engine": classifier.engine,
                "model_version": classifier.model_version,
                "model_built_at": card.built_at,
                "model_file": card.files[classifier.engine].file,
                "model_sha256": classifier.model_sha256,
                "input_size": list(classifier.input_size),
                "class_names": list(card.class_names),
                "neither_threshold": classifier.neither_rule.threshold,
            }
            self.classifier = classifier  # last: from here on requests are served
            log.info("model loaded in %.1f s: %s", time.monotonic() - self.started, self.identity)
        except Exception as error:  # reported by the health check (503 "failed"); run() then stops the server
            self.error = f"{type(error).__name__}: {error}"
            log.exception("the model could not be loaded")
        finally:
            self.done.set()


def ready_model(request: Request) -> Classifier:
    """The routes' one dependency on the model: the app's (create_app puts it in app.state.model), once loaded."""
    model: ModelLoader = request.app.state.model
    return model.ready()


ReadyModel = Annotated[Classifier, Depends(ready_model)]

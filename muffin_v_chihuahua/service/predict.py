"""POST /predict: images as multipart files (field `files`) or one image as the raw body -> verdicts.

Decoding and inference run in worker threads (never on the event loop), so a slow prediction never delays a
health check. Bad input never gives a 5xx: too large -> 413, not an image -> 415, a damaged image -> 422, each
with a JSON body naming the file and what is wrong (bodies.BadInput).
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Query, Request

from muffin_v_chihuahua.service import observing
from muffin_v_chihuahua.service.bodies import (
    ACCEPTED,
    MULTIPART_FIELDS,
    BadInput,
    Upload,
    check_type,
    media_type,
    read_image,
    read_multipart,
)
from muffin_v_chihuahua.service.inference import Undecodable, classify
from muffin_v_chihuahua.service.loading import ReadyModel
from muffin_v_chihuahua.service.metrics import Metrics
from muffin_v_chihuahua.service.schemas import PREDICT_BODY, NotReady, Predictions, Problem
from muffin_v_chihuahua.service.settings import Settings

# Not an image at all: 415. Empty, truncated, corrupt or too many pixels: 422.
STATUS_BY_KIND = {"not-an-image": 415, "too-large": 413, "empty": 422, "corrupt": 422, "too-many-pixels": 422}
ANSWERS: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": "an image or the request is too large, or too many images"},
    415: {"model": Problem, "description": "not an image (content type or content)"},
    422: {"model": Problem, "description": "an image that cannot be decoded: truncated, corrupt, too many pixels"},
    503: {"model": NotReady, "description": "the model is still loading"},
}


async def uploads(request: Request, filename: str, settings: Settings) -> list[Upload]:
    """The request's images, by its content type: multipart files, or one image as the body named `filename`."""
    content_type = media_type(request.headers.get("content-type", ""))
    if content_type == "multipart/form-data":
        files = await read_multipart(request, settings.max_bytes, settings.max_files)
    elif content_type.startswith("image/"):
        files = [Upload(filename, content_type, await read_image(request, settings.max_bytes, filename))]
    else:
        shown = content_type or "no content type"
        accepted = f"send multipart/form-data files under {MULTIPART_FIELDS[0]!r} or one image as the body ({ACCEPTED})"
        raise BadInput(415, [(filename, f"{shown} is not accepted: {accepted}")])
    for upload in files:
        check_type(upload)
    return files


def router(metrics: Metrics, settings: Settings, workers: anyio.CapacityLimiter) -> APIRouter:
    """POST /predict for the app's model within the settings' limits, `workers` threads deciding at once."""
    routes = APIRouter()

    @routes.post(
        "/predict",
        response_model=Predictions,
        response_model_exclude_unset=True,  # the heatmap keys only when asked for: to_dict leaves them out
        openapi_extra={"requestBody": PREDICT_BODY},
        responses=ANSWERS,
    )
    async def predict(
        request: Request,
        classifier: ReadyModel,
        filename: str = Query("request body", description="the name to report for a raw-body image"),
        heatmap: bool = Query(False, description="add each photo's heatmap: where the model looked"),
    ) -> dict[str, Any]:
        """Classify images: multipart/form-data files under `files` (up to the service's `max_files`), or one
        image as the raw body with its content type (image/jpeg, image/png, image/webp, image/gif, ...)."""
        files = await uploads(request, filename, settings)
        try:
            predictions = await anyio.to_thread.run_sync(
                classify, classifier, files, metrics.inferred, heatmap, limiter=workers
            )
        except Undecodable as undecodable:
            status = STATUS_BY_KIND[undecodable.errors[0][1].kind]  # the first bad file's
            raise BadInput(status, [(name, str(error)) for name, error in undecodable.errors]) from None
        observing.predicted(request, metrics, predictions)
        return {
            "engine": classifier.engine,
            "model_sha256": classifier.model_sha256,
            "predictions": [
                {"file": upload.name, **prediction.to_dict()}
                for upload, prediction in zip(files, predictions, strict=True)
            ],
        }

    return routes

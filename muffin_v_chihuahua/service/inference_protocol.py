"""The Open Inference Protocol (KServe v2, Triton's HTTP API) beside /predict, for clients that speak it: its routes
(the tensors' codec is inference_protocol_codec.py).

    GET  /v2                                   server metadata (name, version, extensions)
    GET  /v2/health/live                       200 while the process answers
    GET  /v2/health/ready                      200 once the model is loaded, 503 while it loads
    GET  /v2/models/muffin-v-chihuahua         model metadata: versions, platform, input and output tensors
    GET  /v2/models/muffin-v-chihuahua/ready   as /v2/health/ready
    POST /v2/models/muffin-v-chihuahua/infer   encoded images in, verdicts out

(each /v2/models/muffin-v-chihuahua/... also under .../versions/<the card's model_version>/...)

Errors are the protocol's `{"error": "..."}`: 400 for a request the protocol or the decoder refuses (naming the
element), 413 for an image, too many images or a body over the limits, 404 for another model or version, 503
while the model loads or if it failed to load.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from muffin_v_chihuahua import __version__
from muffin_v_chihuahua.classifier import Classifier
from muffin_v_chihuahua.service import observing
from muffin_v_chihuahua.service.bodies import Upload, read_limited
from muffin_v_chihuahua.service.inference import Undecodable, classify
from muffin_v_chihuahua.service.inference_protocol_codec import (
    HEADER_LENGTH,
    INPUT,
    OUTPUT_NOTES,
    OUTPUT_TENSORS,
    ProtocolError,
    binary_response,
    body_limit,
    encode_outputs,
    parse_request,
    split_request,
)
from muffin_v_chihuahua.service.loading import ModelNotReady, ready_model
from muffin_v_chihuahua.service.metrics import Metrics

MODEL_NAME = "muffin-v-chihuahua"
SERVER_NAME = "muffin-v-chihuahua"
EXTENSIONS = ["binary_tensor_data"]
PLATFORMS = {"onnx-int8": "onnxruntime_onnx", "onnx": "onnxruntime_onnx", "keras": "tensorflow_keras"}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ProtocolRoute(APIRoute):
    """A route that answers the protocol's refusals, and a model not ready, in the protocol's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handle(request)
            except ProtocolError as refused:
                return error(refused.status, str(refused))
            except Undecodable as undecodable:
                return error(400, str(undecodable))
            except ModelNotReady as not_ready:
                return error(503, not_ready.detail, not_ready.headers)

        return answer


def known_model(request: Request, name: str, version: str | None = None) -> Classifier:
    """The model, if `name` (and `version`, if given) are this one's, else 404: for another model even while it loads."""
    if name != MODEL_NAME:
        raise ProtocolError(404, f"unknown model {name!r}: this server serves {MODEL_NAME!r}")
    classifier = ready_model(request)
    if version is not None and version != classifier.model_version:
        raise ProtocolError(404, f"unknown version {version!r} of {MODEL_NAME}: it is {classifier.model_version}")
    return classifier


KnownModel = Annotated[Classifier, Depends(known_model)]


def metadata(classifier: Classifier, max_bytes: int, max_files: int) -> dict[str, Any]:
    """The model's metadata: its versions, platform, tensors and the limits an inference must keep."""
    return {
        "name": MODEL_NAME,
        "versions": [classifier.model_version],
        "platform": PLATFORMS.get(classifier.engine, classifier.engine),
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": name, "datatype": output.datatype, "shape": [-1, *output.shape]}
            for name, output in OUTPUT_TENSORS.items()
        ],
        "parameters": {
            "input": f"{INPUT}: one encoded image (JPEG, PNG, WebP, GIF, BMP, TIFF) per element; base64 strings in JSON",
            "outputs": OUTPUT_NOTES,
            "class_names": list(classifier.card.class_names),
            "max_batch_size": max_files,
            "max_image_bytes": max_bytes,
            "model_sha256": classifier.model_sha256,
        },
    }


def router(metrics: Metrics, *, max_bytes: int, max_files: int, workers: anyio.CapacityLimiter) -> APIRouter:
    """The protocol's routes for the app's model, with /predict's limits: `max_bytes` per image, `max_files` per request."""
    routes = APIRouter(tags=["Open Inference Protocol (KServe v2)"], route_class=ProtocolRoute)
    largest = body_limit(max_bytes, max_files)

    @routes.get("/v2/health/live")
    async def live() -> dict[str, Any]:
        return {"live": True}

    @routes.get("/v2/health/ready", dependencies=[Depends(ready_model)])
    async def ready() -> dict[str, Any]:
        return {"ready": True}

    @routes.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(classifier: KnownModel) -> dict[str, Any]:
        return metadata(classifier, max_bytes, max_files)

    def model_ready(classifier: KnownModel) -> dict[str, Any]:
        return {"name": MODEL_NAME, "ready": True}

    async def infer(request: Request, classifier: KnownModel) -> Response:
        body = await read_limited(request, largest, "the request", lambda message: ProtocolError(413, message))
        header, blobs = split_request(body, request.headers.get(HEADER_LENGTH))
        data, outputs, binary = parse_request(header, blobs, max_bytes, max_files)
        uploads = [Upload(f"{INPUT}[{index}]", "", element) for index, element in enumerate(data)]
        predictions = await anyio.to_thread.run_sync(classify, classifier, uploads, metrics.inferred, limiter=workers)
        observing.predicted(request, metrics, predictions)
        answer: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": classifier.model_version}
        if isinstance(header.get("id"), str):
            answer["id"] = header["id"]
        answer["outputs"], tail = encode_outputs(predictions, outputs, binary)
        if not tail:
            return JSONResponse(answer)
        content, head_length = binary_response(answer, tail)
        return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(head_length)})

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes.add_api_route(prefix, model_metadata, methods=["GET"], response_model=None)
        routes.add_api_route(prefix + "/ready", model_ready, methods=["GET"], response_model=None)
        routes.add_api_route(prefix + "/infer", infer, methods=["POST"], response_model=None)
    return routes

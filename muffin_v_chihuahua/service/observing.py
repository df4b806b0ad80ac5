"""Each request observed once, by one ASGI middleware: its request id, its metrics, its one log line.

The request id is the client's `X-Request-ID` when it sends a usable one (1 to 128 visible ASCII
characters), else a new one; the answer carries it back in `X-Request-ID`. A route adds what only it knows
(the images and verdicts of a prediction) with `predicted(request, ...)`.

The log line goes to the logger "muffin_v_chihuahua.service.requests": JSON, one object a line, with
MUFFIN_V_CHIHUAHUA_LOG_FORMAT=json, else a readable line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from muffin_v_chihuahua.classifier import Prediction
from muffin_v_chihuahua.service.metrics import UNMATCHED, Metrics

log = logging.getLogger("muffin_v_chihuahua.service.requests")
REQUEST_ID_HEADER = "X-Request-ID"
USABLE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
STATE_KEY = "muffin_v_chihuahua"  # where, in the request's state, a route notes what the log line says


def predicted(request: Request, metrics: Metrics, predictions: Sequence[Prediction]) -> None:
    """A prediction request's verdicts: counted in the metrics, and noted for its log line (their count is its
    images); for /predict and /v2 alike."""
    verdicts = [prediction.verdict for prediction in predictions]
    metrics.predicted(verdicts)
    request.scope.setdefault("state", {}).setdefault(STATE_KEY, {}).update(
        images=len(verdicts), verdicts=dict(Counter(verdicts))
    )


class Observe:
    """The ASGI middleware: request id, in-flight gauge, request count and duration, one log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        request_id = sent if USABLE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        noted: dict[str, Any] = scope.setdefault("state", {}).setdefault(STATE_KEY, {})
        status = 500  # if the app fails before it answers, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or UNMATCHED
            self.metrics.answered(scope["method"], endpoint, status, seconds)
            fields = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "endpoint": endpoint,
                "status": status,
                "images": noted.get("images", 0),
                "verdicts": noted.get("verdicts", {}),
                "duration_seconds": round(seconds, 6),
            }
            log.info("request", extra={"request": fields})


class JSONLines(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message and, for a request, its fields."""

    converter = time.gmtime  # type: ignore[assignment]  # typeshed: gmtime(secs=None) is the same

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "request", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class Readable(logging.Formatter):
    """`INFO:     request 1f0c... POST /predict 200 2 images (muffin=1 neither=1) 0.084 s`, uvicorn's style."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "request", None)
        if fields is None:
            return super().format(record)
        verdicts = " ".join(f"{verdict}={count}" for verdict, count in sorted(fields["verdicts"].items()))
        images = f" {fields['images']} images ({verdicts})" if fields["images"] else ""
        return (
            f"{record.levelname + ':':<9} request {fields['request_id']} {fields['method']} {fields['path']} "
            f"{fields['status']}{images} {fields['duration_seconds']:.3f} s"
        )


def configure(log_format: str) -> None:
    """The request logger's one handler (stderr, beside uvicorn's own lines), in `log_format` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONLines() if log_format == "json" else Readable("%(levelname)-9s %(message)s"))
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False

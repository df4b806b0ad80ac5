"""Admission: how many request-body bytes the service may hold at once, so that memory stays bounded under load.

A body is held whole until a worker decodes it, and uvicorn reads every connection's body at once: without a
bound, 24 clients each sending 16 images of 9 MB held 4.5 GB. Here every request's body bytes are reserved
from one budget: all of them up front when it declares a Content-Length, else as they arrive. A request that
does not fit is refused with 503, Retry-After and the service's JSON error body: from its Content-Length
before a byte of its body is read (nor invited: a client that sent `Expect: 100-continue` never sends it),
else as soon as its bytes pass the budget. The rest of a refused body is read and dropped after the answer
(draining.py), so that a client that sends its whole body before reading reads the 503, not a reset. The
reservation is released when the request is done, whatever happened (an answer, an error, a client that
went away).

The default budget (budget()) is room for the requests the workers can process at once plus QUEUED more,
each as large as the limits allow; MAX_HELD_MB_VARIABLE (settings.py) sets another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from muffin_v_chihuahua.service.bodies import BadInput, declared_length

QUEUED = 1  # requests waiting, bodies read, for a worker: the next one starts without waiting for a body
RETRY_AFTER_SECONDS = 1  # a request of the largest kind takes about a second of a worker


def budget(request_limit: int, workers: int) -> int:
    """The default budget in bytes: the largest requests the workers can process at once, plus QUEUED more."""
    return (workers + QUEUED) * request_limit


class Overloaded(BadInput):
    """A request refused because the service is busy (`why`: with what): 503 with Retry-After (and `headers`), the
    service's JSON error body ({"detail", "errors"})."""

    def __init__(self, why: str, headers: dict[str, str] | None = None):
        retry_after = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        super().__init__(503, [(None, f"the service is busy ({why}): retry later")], {**retry_after, **(headers or {})})


class Admission:
    """The bytes held at once, against the budget (thread-safe; reserve() never waits: it fits or it fails)."""

    def __init__(self, budget: int, on_refused: Callable[[], None]):
        self.budget = budget
        self.held = 0
        self.on_refused = on_refused  # e.g. a metric's count: observed, it decides nothing
        self._lock = threading.Lock()

    def reserve(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.budget:
                self.on_refused()
                return False
            self.held += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self.held -= size

    def overloaded(self) -> Overloaded:
        """What a request that does not fit is told: the bytes held, against the budget."""
        mb = 1024 * 1024
        return Overloaded(f"{self.held / mb:.0f} of {self.budget / mb:.0f} MB of requests held")


class AdmissionMiddleware:
    """ASGI middleware: each request's body bytes reserved from `admission` (see the module's docstring).

    A declared Content-Length over `request_limit` is not reserved up front: the app refuses it (413) before
    reading a byte. Its bytes are still counted as they arrive, as a chunked body's are."""

    def __init__(self, app: ASGIApp, admission: Admission, request_limit: int):
        self.app, self.admission, self.request_limit = app, admission, request_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(Headers(scope=scope))
        reserved = 0
        try:
            if declared is not None and 0 < declared <= self.request_limit:
                if not self.admission.reserve(declared):
                    await self._refuse(scope, send, self.admission.overloaded())
                    return
                reserved = declared
            received = 0

            async def counted() -> Message:
                """The app's receive: arriving bytes beyond the reservation are reserved, or it raises Overloaded."""
                nonlocal received, reserved
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > reserved:
                        if not self.admission.reserve(received - reserved):
                            raise self.admission.overloaded()
                        reserved = received
                return message

            await self.app(scope, counted, send)
        finally:
            self.admission.release(reserved)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: Overloaded) -> None:
        async def nothing() -> Message:  # the answer never asks for the body: an expecting client is not invited
            return {"type": "http.disconnect"}

        await error.answer()(scope, nothing, send)


def refusing_every_request(on_refused: Callable[[], None]) -> ASGIApp:
    """An ASGI app that answers every request 503 busy, with `Connection: close` (fewer connections is the
    point), calling on_refused: uvicorn's answer past its limit_concurrency (app.run), in the service's shape."""
    error = Overloaded("too many connections or requests at once", {"Connection": "close"})

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        on_refused()
        await error.answer()(scope, receive, send)

    return refuse


def install(app: FastAPI, held_bytes: int, request_limit: int, on_refused: Callable[[], None]) -> None:
    """Bound the request bytes `app` holds at once to `held_bytes`, calling on_refused for each request refused.
    An Overloaded raised while a body is read is answered by the app's BadInput handler (bodies.bad_input_answer)."""
    admission = Admission(held_bytes, on_refused)
    app.add_middleware(AdmissionMiddleware, admission=admission, request_limit=request_limit)

"""An answer that comes before its request's body has arrived (a refusal: 503, 413, 415...) must still reach a
client that is sending that body.

urllib, requests, http.client and httpx send the whole body before they read anything. uvicorn closes the
connection as soon as an answer ends when the request said `Connection: close` (urllib's always does); the
body bytes still arriving then meet a closed socket, the kernel answers them with a reset, and the client
sees a connection error instead of the answer. So this middleware, around the app, lets an early answer go out
at once (a client that reads while it sends, as curl and browsers do, has it at once and may stop sending),
but holds back its end, which is what closes the connection, until the rest of the body is read and dropped.

The drain is bounded: each chunk is dropped as it comes (uvicorn stops reading past 64 KB buffered), at most
`limit` bytes (a body declared larger is not waited for), and it stops once the client has sent nothing for
IDLE_SECONDS or has gone. A client that asked `Expect: 100-continue` and was never invited to send (the app did
not read its body) is answered `Connection: close`: the body it holds back must not be taken for its next
request.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from muffin_v_chihuahua.service.bodies import declared_length, drain

# A client silent this long while we drain has gone (uvicorn's keep-alive timeout is as long); shorter gaps are
# normal under load: 24 clients sending 144 MB each with 4 busy processes on 2 CPUs went 0.76 s without a chunk.
IDLE_SECONDS = 5.0


class FinishReading:
    """ASGI middleware: an answer's end waits until its request's body is read (see the module's docstring)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = declared_length(headers)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        expects = headers.get("expect", "").lower() == "100-continue"
        body_ended = not chunked and not declared
        invited = False  # the app asked for the body: uvicorn has told an expecting client to send it
        held_end: Message | None = None

        async def tracked() -> Message:
            nonlocal body_ended, invited
            invited = True
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_ended = True
            return message

        async def holding_end(message: Message) -> None:
            nonlocal held_end
            if body_ended:
                await send(message)
            elif message["type"] == "http.response.start" and expects and not invited:
                kept = [(name, value) for name, value in message.get("headers", []) if name.lower() != b"connection"]
                await send({**message, "headers": [*kept, (b"connection", b"close")]})
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                await send({**message, "more_body": True})  # the whole answer, but not its end
                held_end = {"type": "http.response.body", "body": b"", "more_body": False}
            else:
                await send(message)

        await self.app(scope, tracked, holding_end)
        if held_end is not None:  # after the app (and the reservations it held) is done
            if chunked or (declared or 0) <= self.limit:
                await drain(receive, self.limit, IDLE_SECONDS)
            await send(held_end)

"""A limit on request body size, enforced before a route reads the body."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import BODY_TOO_LARGE, problem_response

MAX_BODY_BYTES = 256 * 1024
"""Largest accepted request body. A job's spec is stored in its Temporal history, where a
payload over 2 MB is rejected and one of 256 KB already draws a warning."""

MAX_OBJECT_BYTES = 1024**3
"""Largest object accepted by `PUT /v1/objects/{key}`, which streams the body to a file
instead of holding it in memory; that route enforces this limit itself."""

STREAMED_PATH_PREFIX = "/v1/objects/"
"""Paths whose bodies `BodySizeLimit` leaves to the route, which applies `MAX_OBJECT_BYTES`."""


class BodySizeLimit:
    """ASGI middleware that returns 413 for a body over `max_bytes`, declared or streamed.

    Paths under `STREAMED_PATH_PREFIX` pass unchecked, because their route limits them.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(STREAMED_PATH_PREFIX):
            await self.app(scope, receive, send)
            return

        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            scope["path"],
            413,
            f"the request body is larger than {self.max_bytes} bytes",
            problem_type=BODY_TOO_LARGE,
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass

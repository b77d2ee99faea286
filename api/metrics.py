"""Prometheus metrics of the API's requests, counted by an ASGI middleware.

Requests are labelled with the route's path template (`/v1/jobs/{job_id}`), never the raw
path, so that job ids do not create a series each. A request that matched no route is
labelled `UNMATCHED_ROUTE`. `GET /metrics` serves these with the rest of the default registry.
"""

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter(
    "cac_http_requests",
    "API requests, by method, route template and response status.",
    ["method", "route", "status"],
)

HTTP_REQUEST_DURATION = Histogram(
    "cac_http_request_duration_seconds",
    "Seconds from a request's arrival until its response was sent, by method and route template.",
    ["method", "route"],
)


class RequestMetrics:
    """ASGI middleware that counts each HTTP request and times it until its response is sent.

    A request that raised out of the app is counted with status 500, the response that the
    server then sends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            # The router stores the matched route in the scope, which is the same dict here.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            method = scope["method"]
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_REQUEST_DURATION.labels(method=method, route=route).observe(
                time.perf_counter() - started
            )

"""ASGI middleware that keeps a request's tenant in its own log lines only."""

from starlette.types import ASGIApp, Receive, Scope, Send

from config.logging import tenant_log_context


class RequestLogContext:
    """Clears the log tenant at the start of each request and restores it at the end.

    `api.deps.get_tenant` sets the tenant once the token is verified. A server that runs
    several requests in one task, as in-process test clients do, would otherwise carry one
    request's tenant into the next one's log lines.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with tenant_log_context(None):
            await self.app(scope, receive, send)

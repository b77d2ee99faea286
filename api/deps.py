"""FastAPI dependencies: settings, the Temporal client, the ledger engine and the caller."""

import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from starlette.routing import BaseRoute
from temporalio.client import Client

from api.auth import InvalidToken, Principal, TokenVerifier
from api.errors import (
    INSUFFICIENT_SCOPE,
    INVALID_TOKEN,
    KEY_SET_UNAVAILABLE,
    MISSING_TOKEN,
    ApiProblem,
)
from api.jwks import JwksUnavailable
from config import Settings
from config.logging import set_log_tenant
from ledger.models import PLATFORM_TENANT_ID

logger = logging.getLogger(__name__)

# auto_error is off so that a missing header gets the same 401 and WWW-Authenticate header as
# a bad token, instead of FastAPI's default response.
_bearer = HTTPBearer(
    auto_error=False,
    description="JWT signed with one of the algorithms in CAC_JWT_ALGORITHMS; `sub` is the"
    " tenant and `scope` the space-separated scopes.",
)

KEY_SET_RETRY_SECONDS = 30
"""`Retry-After` of the 503 returned while the token signing keys cannot be fetched."""


def get_settings(request: Request) -> Settings:
    """Return the settings that the app was created with."""
    return request.app.state.settings


def get_temporal_client(request: Request) -> Client:
    """Return the Temporal client connected at startup.

    Raises:
        HTTPException: 503 when the app runs without a client, as before startup.
    """
    client = request.app.state.temporal_client
    if client is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Temporal is not connected")
    return client


def get_ledger_engine(request: Request) -> Engine:
    """Return the ledger engine created at startup.

    Raises:
        HTTPException: 503 when the app runs without an engine, as before startup.
    """
    engine = request.app.state.ledger_engine
    if engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the ledger is not connected")
    return engine


SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalClientDep = Annotated[Client, Depends(get_temporal_client)]
LedgerEngineDep = Annotated[Engine, Depends(get_ledger_engine)]


def get_token_verifier(request: Request) -> TokenVerifier:
    """Return the token verifier of the app, built from its settings on first use."""
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        verifier = TokenVerifier.from_settings(request.app.state.settings)
        request.app.state.token_verifier = verifier
    return verifier


async def get_principal(
    verifier: Annotated[TokenVerifier, Depends(get_token_verifier)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the caller by the bearer token in the Authorization header.

    Raises:
        ApiProblem: 401 with `WWW-Authenticate: Bearer` when the token is missing, malformed,
            badly signed, expired, or fails the issuer or audience check; 503 when the
            identity provider's signing keys cannot be fetched.
    """
    if credentials is None:
        raise ApiProblem(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token in the Authorization header",
            problem_type=MISSING_TOKEN,
            headers={"WWW-Authenticate": "Bearer"},
        )

    try:
        return await verifier.verify(credentials.credentials)
    except InvalidToken as error:
        logger.info("bearer token rejected: %s", error)
        raise ApiProblem(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid bearer token: {error}",
            problem_type=INVALID_TOKEN,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    except JwksUnavailable as error:
        _warn_key_set_unavailable(error)
        raise ApiProblem(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the identity provider's signing keys could not be fetched to verify the token;"
            " retry later",
            problem_type=KEY_SET_UNAVAILABLE,
            headers={"Retry-After": str(KEY_SET_RETRY_SECONDS)},
        ) from None


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]

_key_set_failures = 0
_key_set_warned_at: float | None = None


def _warn_key_set_unavailable(error: JwksUnavailable) -> None:
    """Log the key set failure at most once per `KEY_SET_RETRY_SECONDS`, with a count.

    While the identity provider is down, every request with an asymmetric token fails the
    same way, and one line per request would bury the rest of the log.
    """
    global _key_set_failures, _key_set_warned_at
    _key_set_failures += 1
    now = time.monotonic()
    if _key_set_warned_at is not None and now - _key_set_warned_at < KEY_SET_RETRY_SECONDS:
        return
    logger.warning(
        "token signing keys unavailable, %d requests rejected since the last warning: %s",
        _key_set_failures,
        error,
    )
    _key_set_failures = 0
    _key_set_warned_at = now


async def get_tenant(principal: CurrentPrincipal) -> str:
    """Return the caller's tenant id, the token's subject, and add it to the request's logs.

    Raises:
        HTTPException: 403 for the platform's own tenant id, which no customer may use.
    """
    if principal.subject == PLATFORM_TENANT_ID:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the token's subject {PLATFORM_TENANT_ID!r} is the platform's own tenant id, not a"
            " customer's; use another subject",
        )
    # Async, so that it runs in the request's own task and the log context reaches the route.
    set_log_tenant(principal.subject)
    return principal.subject


CurrentTenant = Annotated[str, Depends(get_tenant)]


def require_scope(*accepted: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """Build a dependency that admits a caller whose token grants any of the `accepted` scopes.

    The dependency raises ApiProblem 403 naming the scopes when the token grants none. Its
    `accepted_scopes` attribute holds the scopes, for `required_scopes`.
    """
    if not accepted:
        raise ValueError("require_scope needs at least one scope")
    needed = " or ".join(accepted)

    # async, so that FastAPI runs the check on the event loop instead of in its thread pool.
    async def check_scope(principal: CurrentPrincipal) -> Principal:
        if principal.scopes.isdisjoint(accepted):
            raise ApiProblem(
                status.HTTP_403_FORBIDDEN,
                f"the token lacks the required scope {needed}",
                problem_type=INSUFFICIENT_SCOPE,
                headers={
                    "WWW-Authenticate": (
                        f'Bearer error="insufficient_scope", scope="{" ".join(accepted)}"'
                    )
                },
            )
        return principal

    check_scope.accepted_scopes = frozenset(accepted)  # type: ignore[attr-defined]
    return check_scope


def iter_api_routes(routes: Iterable[BaseRoute]) -> Iterator[RouteContext]:
    """Yield every API route in `routes`, such as an app's, including those of included routers.

    Each route comes as FastAPI's view of it after inclusion: its `path_format` carries the
    routers' prefixes and its `dependant` their dependencies.
    """
    for route in iter_route_contexts(list(routes)):
        if isinstance(route.original_route, APIRoute):
            yield route


def required_scopes(route: APIRoute | RouteContext) -> list[frozenset[str]]:
    """Return the scope checks of a route, from its dependencies and theirs.

    Each item is one `require_scope` check: the caller needs any one of its scopes. An empty
    list means the route checks no scope.
    """
    checks = []
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop(0)
        accepted = getattr(dependency.call, "accepted_scopes", None)
        if accepted is not None:
            checks.append(accepted)
        pending.extend(dependency.dependencies)
    return checks

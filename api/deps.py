"""FastAPI dependencies: settings, the Temporal client, the ledger engine and the caller."""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.auth import InvalidToken, Principal, decode_token
from config import Settings

# auto_error is off so that a missing header gets the same 401 and WWW-Authenticate header as
# a bad token, instead of FastAPI's default response.
_bearer = HTTPBearer(auto_error=False, description="JWT signed with HS256; `sub` is the tenant.")


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


def get_principal(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the caller by the bearer token in the Authorization header.

    Raises:
        HTTPException: 401 with `WWW-Authenticate: Bearer` when the token is missing, malformed,
            badly signed or expired.
    """
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token in the Authorization header",
            headers={"WWW-Authenticate": "Bearer"},
        )

    try:
        return decode_token(credentials.credentials, settings.jwt_secret.get_secret_value())
    except InvalidToken as error:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid bearer token: {error}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_tenant(principal: CurrentPrincipal) -> str:
    """Return the caller's tenant id: the token's subject."""
    return principal.subject


CurrentTenant = Annotated[str, Depends(get_tenant)]


def require_scope(*accepted: str) -> Callable[[Principal], Principal]:
    """Build a dependency that admits a caller whose token grants any of the `accepted` scopes.

    The dependency raises HTTPException 403 naming the scopes when the token grants none.
    """
    if not accepted:
        raise ValueError("require_scope needs at least one scope")
    needed = " or ".join(accepted)

    def check_scope(principal: CurrentPrincipal) -> Principal:
        if principal.scopes.isdisjoint(accepted):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the token lacks the required scope {needed}",
                headers={
                    "WWW-Authenticate": (
                        f'Bearer error="insufficient_scope", scope="{" ".join(accepted)}"'
                    )
                },
            )
        return principal

    return check_scope

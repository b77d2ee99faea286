"""Error responses that FastAPI's defaults get wrong for this API."""

import logging
from decimal import Decimal

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.service import RPCError

logger = logging.getLogger(__name__)


async def request_validation_error_handler(
    request: Request, error: RequestValidationError
) -> JSONResponse:
    """Return 422 with pydantic's error list, echoing decimal inputs as strings.

    FastAPI's default handler encodes a `Decimal` input as a float, which fails with a 500 for
    `NaN` or `Infinity` and rounds any other amount in the echo.
    """
    detail = jsonable_encoder(error.errors(), custom_encoder={Decimal: str})
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": detail}
    )


def field_error(location: tuple[str, ...], message: str) -> RequestValidationError:
    """Build a 422 error that names one request field, in the shape of FastAPI's own.

    Args:
        location: Where the field is, as FastAPI reports it, such as `("body", "amount")` or
            `("header", "Idempotency-Key")`.
        message: What is wrong with the field's value and what to do instead.
    """
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message}])


async def temporal_rpc_error_handler(request: Request, error: RPCError) -> JSONResponse:
    """Return 503 for a Temporal call that failed, instead of FastAPI's bare 500.

    Routes catch the RPC errors that have a meaning for them, such as NOT_FOUND; whatever
    reaches this handler is the Temporal service being unavailable or failing.
    """
    logger.warning(
        "%s %s: Temporal call failed with %s: %s",
        request.method,
        request.url.path,
        error.status.name,
        error.message,
    )
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"the Temporal service failed ({error.status.name}); retry later"},
    )

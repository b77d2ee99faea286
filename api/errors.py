"""Every error response as an RFC 9457 problem: `application/problem+json` with `type`, `title`,
`status`, `detail` and `instance` (the request path).

A 422 also lists each invalid field in `errors`. Each entry names the part of the request
(`in`: body, query, path, header or cookie), the field's dotted path (`field`), the reason
(`detail`), pydantic's error `type` and the rejected `input`, with decimals as strings.

Routes raise `HTTPException`, `ApiProblem` (for a problem type of its own) or
`field_error(...)`. The handlers that `install_problem_handlers` registers turn those, Temporal
RPC failures and unexpected exceptions into problems, and document them in the OpenAPI schema.
"""

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import Any, Literal

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

PROBLEM_TYPE_BASE = "https://compute-as-credit.dev/problems/"
"""Prefix of every problem `type`. The URIs identify problem types; nothing is served there."""

MAX_ERRORS_IN_DETAIL = 3
"""Invalid fields named in a 422's `detail`; `errors` lists all of them."""


@dataclass(frozen=True)
class ProblemType:
    """A kind of error that clients can tell apart by its `type` URI."""

    name: str
    """Last segment of the type URI, such as `validation-error`."""

    title: str
    """Summary of the problem type, the same for every occurrence."""

    @property
    def uri(self) -> str:
        """The problem's `type` member."""
        return PROBLEM_TYPE_BASE + self.name


VALIDATION_ERROR = ProblemType("validation-error", "Invalid request")
MISSING_TOKEN = ProblemType("missing-token", "Authentication required")
INVALID_TOKEN = ProblemType("invalid-token", "Invalid bearer token")
INSUFFICIENT_SCOPE = ProblemType("insufficient-scope", "Insufficient scope")
BODY_TOO_LARGE = ProblemType("body-too-large", "Request body too large")
TEMPORAL_UNAVAILABLE = ProblemType("temporal-unavailable", "Temporal unavailable")
KEY_SET_UNAVAILABLE = ProblemType("key-set-unavailable", "Token signing keys unavailable")
INTERNAL_ERROR = ProblemType("internal-error", "Internal server error")


def status_problem_type(status_code: int) -> ProblemType:
    """Return the problem type of an error that has no meaning beyond its HTTP status.

    A 422 is always a `validation-error`; any other status is named after its reason phrase,
    such as `not-found` for 404.
    """
    if status_code == status.HTTP_422_UNPROCESSABLE_CONTENT:
        return VALIDATION_ERROR
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = f"HTTP {status_code}"
    return ProblemType(phrase.lower().replace(" ", "-"), phrase)


class ApiProblem(HTTPException):
    """An HTTPException with a problem type of its own, such as `invalid-token`."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        problem_type: ProblemType,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail, headers=headers)
        self.problem_type = problem_type


class FieldError(BaseModel):
    """One invalid field of a request."""

    model_config = ConfigDict(populate_by_name=True)

    location: Literal["body", "query", "path", "header", "cookie"] = Field(alias="in")
    """The part of the request that contains the field."""

    field: str = Field(
        description="Dotted path of the field within `in`, such as `agentSpec.cmd.0`, or the"
        " parameter or header name; empty for the body as a whole."
    )
    detail: str = Field(description="Why the value is invalid.")
    type: str = Field(description="Pydantic's error type, such as `missing` or `value_error`.")
    input: Any = Field(
        default=None,
        description="The rejected value; absent when the field is missing. Decimals are strings.",
    )


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(description="URI that identifies the problem type.")
    title: str = Field(description="Summary of the problem type.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="Explanation of this occurrence and what to do about it.")
    instance: str = Field(description="Path of the request that failed.")


class ValidationProblem(Problem):
    """A problem whose request had invalid fields."""

    errors: list[FieldError] = Field(
        description="Every invalid field; empty when the request as a whole is invalid."
    )


class ProblemResponse(JSONResponse):
    """A JSON response with the `application/problem+json` media type."""

    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        # ASCII with escapes, so that a rejected input echoed back, which may hold a lone
        # surrogate that JSON allows but UTF-8 cannot encode, still renders.
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()


def problem_response(
    request_path: str,
    status_code: int,
    detail: str,
    *,
    problem_type: ProblemType | None = None,
    headers: Mapping[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> ProblemResponse:
    """Build a problem response; the type follows from `status_code` when not given."""
    problem_type = problem_type or status_problem_type(status_code)
    body = {
        "type": problem_type.uri,
        "title": problem_type.title,
        "status": status_code,
        "detail": detail,
        "instance": request_path,
    }
    if errors is not None or problem_type == VALIDATION_ERROR:
        body["errors"] = [
            error.model_dump(mode="json", by_alias=True, exclude_unset=True)
            for error in errors or []
        ]
    return ProblemResponse(body, status_code=status_code, headers=headers)


def field_error(location: tuple[str, ...], message: str) -> RequestValidationError:
    """Build a 422 error that names one request field, in the shape of FastAPI's own.

    Args:
        location: Where the field is, as FastAPI reports it, such as `("body", "amount")` or
            `("header", "Idempotency-Key")`.
        message: What is wrong with the field's value and what to do instead.
    """
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message}])


async def request_validation_error_handler(
    request: Request, error: RequestValidationError
) -> ProblemResponse:
    """Return a 422 problem that lists each invalid field."""
    errors = [_field_error(item) for item in error.errors()]
    return problem_response(
        request.url.path,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        _summarize(errors),
        problem_type=VALIDATION_ERROR,
        errors=errors,
    )


async def http_exception_handler(request: Request, error: HTTPException) -> ProblemResponse:
    """Return the problem of an HTTPException raised by a route, a dependency or the router.

    FastAPI returns a bare 400 for a JSON body that its parser rejects without a syntax error,
    such as one nested too deeply or with an integer of more than 4300 digits. That is a 422
    here, as for any other body that is not valid JSON.
    """
    cause = error.__cause__
    if error.status_code == status.HTTP_400_BAD_REQUEST and isinstance(
        cause, ValueError | RecursionError
    ):
        body_error = FieldError(
            location="body", field="", detail=_unparsable_body(cause), type="json_invalid"
        )
        return problem_response(
            request.url.path,
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"body: {body_error.detail}",
            errors=[body_error],
        )

    return problem_response(
        request.url.path,
        error.status_code,
        str(error.detail),
        problem_type=getattr(error, "problem_type", None),
        headers=error.headers,
    )


async def temporal_rpc_error_handler(request: Request, error: RPCError) -> ProblemResponse:
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
    return problem_response(
        request.url.path,
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"the Temporal service failed ({error.status.name}); retry later",
        problem_type=TEMPORAL_UNAVAILABLE,
    )


class UnhandledErrorMiddleware:
    """ASGI middleware that turns an unexpected exception into a 500 problem.

    The exception is logged here, once, with its traceback and the request path, and is not
    raised again, so the server does not log it a second time. An exception raised after the
    response started cannot change the response: it is raised for the server to log and to
    close the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if response_started:
                raise
            logger.exception(
                "%s %s failed with an unexpected error", scope["method"], scope["path"]
            )
            response = problem_response(
                scope["path"],
                status.HTTP_500_INTERNAL_SERVER_ERROR,
                "the server failed to handle the request; the error is logged with its path",
                problem_type=INTERNAL_ERROR,
            )
            await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error response of `app` a problem, and document them in its OpenAPI schema.

    Call it after adding the other middleware, so that an unexpected exception in any of them
    also becomes a 500 problem.
    """
    app.add_exception_handler(HTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, request_validation_error_handler)
    app.add_exception_handler(RPCError, temporal_rpc_error_handler)
    app.add_middleware(UnhandledErrorMiddleware)
    _document_problems(app)


def _field_error(error: Mapping[str, Any]) -> FieldError:
    location, *path = error["loc"] or ("body",)
    if location not in ("body", "query", "path", "header", "cookie"):
        path = [location, *path]
        location = "body"

    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "json_invalid":
        # FastAPI reports the character offset of the syntax error as the field.
        reason = error.get("ctx", {}).get("error", "syntax error")
        offset = path[0] if path else 0
        return FieldError(
            location="body",
            field="",
            detail=f"the body is not valid JSON: {reason} at character {offset}",
            type="json_invalid",
        )

    echo = {}
    if error["type"] != "missing" and "input" in error:
        echo["input"] = _json_safe(error["input"])
    return FieldError(
        location=location,
        field=".".join(str(part) for part in path),
        detail=message,
        type=error["type"],
        **echo,
    )


def _summarize(errors: list[FieldError]) -> str:
    if not errors:
        return "the request is invalid"
    parts = [f"{error.field or error.location}: {error.detail}" for error in errors]
    summary = "; ".join(parts[:MAX_ERRORS_IN_DETAIL])
    if len(parts) > MAX_ERRORS_IN_DETAIL:
        summary += f"; and {len(parts) - MAX_ERRORS_IN_DETAIL} more (see errors)"
    return summary


def _unparsable_body(cause: Exception) -> str:
    if isinstance(cause, RecursionError):
        return "the body is not valid JSON: it is nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not valid JSON: it is not UTF-8 text"
    # Python's message ends with advice for the server's operator, which the client cannot use.
    return f"the body is not valid JSON: {str(cause).split(';')[0]}"


def _json_safe(value: Any) -> Any:
    """Convert a rejected input into JSON, with decimals and non-finite floats as strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(Decimal(value))
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(item) for item in value]
    return str(value)


# OpenAPI documentation of the problems.

_SCHEMA_REF = "#/components/schemas/{model}"


def _document_problems(app: FastAPI) -> None:
    """Wrap `app.openapi` so that each operation documents the problems it can return."""
    generate = app.openapi
    documented: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        # FastAPI caches the schema, and generates a new one when routes were added since.
        schema = generate()
        if not any(schema is seen for seen in documented):
            _add_problem_responses(schema, app.routes)
            documented[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_problem_responses(schema: dict[str, Any], routes: Iterable[Any]) -> None:
    from api.deps import iter_api_routes

    components = schema.setdefault("components", {}).setdefault("schemas", {})
    validation_schema = ValidationProblem.model_json_schema(ref_template=_SCHEMA_REF)
    components.update(validation_schema.pop("$defs", {}))
    components["ValidationProblem"] = validation_schema
    components["Problem"] = Problem.model_json_schema(ref_template=_SCHEMA_REF)

    for route in iter_api_routes(routes):
        if not route.include_in_schema:
            continue
        path_item = schema.get("paths", {}).get(route.path_format, {})
        for method in route.methods:
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status_code, description in _expected_problems(route).items():
                responses.setdefault(str(status_code), {"description": description})
            for status_code, response in responses.items():
                _set_problem_content(status_code, response)

    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _expected_problems(route: Any) -> dict[int, str]:
    """Return the error statuses that the route's dependencies and parameters can cause, each
    with its description."""
    # Imported here because api.deps imports this module.
    from api.deps import (
        get_ledger_engine,
        get_principal,
        get_temporal_client,
        required_scopes,
    )

    calls = set(_dependency_calls(route.dependant))
    dependant = route.dependant
    unavailable = "The token signing keys, Temporal or the ledger is unavailable."
    invalid = "Invalid request; `errors` names each invalid field."

    problems = {status.HTTP_500_INTERNAL_SERVER_ERROR: "Unexpected error; it is logged."}
    if get_principal in calls:
        problems[status.HTTP_401_UNAUTHORIZED] = "Missing, malformed, expired or invalid token."
        problems[status.HTTP_503_SERVICE_UNAVAILABLE] = unavailable
    if required_scopes(route):
        problems[status.HTTP_403_FORBIDDEN] = "The token lacks the route's scope."
    if calls & {get_temporal_client, get_ledger_engine}:
        problems[status.HTTP_503_SERVICE_UNAVAILABLE] = unavailable
    if route.body_field is not None:
        problems[status.HTTP_413_CONTENT_TOO_LARGE] = "The request body is too large."
        problems[status.HTTP_422_UNPROCESSABLE_CONTENT] = invalid
    if dependant.query_params or dependant.path_params or dependant.header_params:
        problems[status.HTTP_422_UNPROCESSABLE_CONTENT] = invalid
    if dependant.path_params:
        # A path parameter that contains an encoded slash makes the path match no route.
        problems[status.HTTP_404_NOT_FOUND] = "Not found."
    return problems


def _dependency_calls(dependant: Any) -> Iterable[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)


def _set_problem_content(status_code: str, response: dict[str, Any]) -> None:
    """Give an error response the problem schema, unless the route declared a body of its own."""
    if status_code[:1] not in ("4", "5"):
        return
    content = response.get("content")
    declared_own = content is not None and not _is_fastapi_validation_error(content)
    if declared_own and any(media.get("schema") for media in content.values()):
        return
    model = "ValidationProblem" if status_code == "422" else "Problem"
    response["content"] = {
        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _SCHEMA_REF.format(model=model)}}
    }


def _is_fastapi_validation_error(content: dict[str, Any]) -> bool:
    schema = content.get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").endswith("/HTTPValidationError")

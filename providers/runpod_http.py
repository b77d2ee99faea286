"""HTTP calls to RunPod's REST and GraphQL APIs, with retries and error classification.

RunPod has two public APIs, and the adapter uses both:

* REST, `https://rest.runpod.io/v1` (OpenAPI "Runpod API" 0.1.0): `POST /pods` creates a
  pod and responds 201 with the pod, `GET /pods?name=...` lists pods, `GET /pods/{podId}`
  reads one or responds 404, and `DELETE /pods/{podId}` responds 204.
* GraphQL, `https://api.runpod.io/graphql`: `gpuTypes { lowestPrice(...) }` for prices and
  the `podRentInterruptable` mutation for spot bids, which REST does not offer.

Both get the API key as `Authorization: Bearer <key>`, so that it never appears in a URL,
because httpx logs request URLs.
NOTE: RunPod's GraphQL examples pass the key as `?api_key=`. The bearer header is what RunPod's
REST API documents, and public GraphQL clients send it too, but RunPod's GraphQL documentation
does not show it.

Errors become the project's `ProviderError` types here:

* "No capacity" errors become `OutOfCapacity`, whatever the HTTP status. RunPod reports it as
  a message, "There are no longer any instances available with the requested
  specifications", as a GraphQL error or in a REST error body.
* 429 and 5xx responses, timeouts and connection errors are retried with exponential backoff,
  honouring `Retry-After` on 429, up to `max_attempts`; then `TransientProviderError`.
* 401, 403 and other 4xx responses become `PermanentProviderError`.

A request that creates something is not repeated after a response that leaves its outcome
unknown (5xx, timeout, lost connection): that raises `RequestOutcomeUnknown`, and the caller
looks up whether the pod exists. A 429 is repeated, because the request was not carried out.
"""

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from providers.base import OutOfCapacity, PermanentProviderError, TransientProviderError

logger = logging.getLogger(__name__)

DEFAULT_REST_URL = "https://rest.runpod.io/v1"
DEFAULT_GRAPHQL_URL = "https://api.runpod.io/graphql"

_NO_CAPACITY = re.compile(
    # RunPod's create-pod error, reported in public issue threads with "requested" and with
    # "request", and its error when a machine cannot host the pod.
    r"no longer any instances available|does not have the resources to deploy",
    re.IGNORECASE,
)
_TRANSIENT_GRAPHQL = re.compile(r"something went wrong|try again later|internal server error", re.I)
_MAX_ERROR_TEXT = 500


class RequestOutcomeUnknown(TransientProviderError):
    """A request that creates something got no clear response, so it may have been carried out."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed transiently."""

    max_attempts: int = 4
    """Attempts in total, the first included. Default 4."""

    backoff_seconds: float = 1.0
    """Wait before the second attempt; it doubles for each further attempt. Default 1."""

    max_backoff_seconds: float = 30.0
    """Maximum wait between two attempts, also the cap on a `Retry-After`. Default 30."""

    def backoff(self, attempt: int) -> float:
        """Return the seconds to wait after failed attempt number `attempt` (from 1)."""
        return min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)


class RunPodHttp:
    """An authenticated client of RunPod's REST and GraphQL APIs."""

    def __init__(
        self,
        *,
        api_key: str,
        rest_url: str = DEFAULT_REST_URL,
        graphql_url: str = DEFAULT_GRAPHQL_URL,
        timeout_seconds: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Create the client.

        Args:
            api_key: RunPod API key, sent as a bearer token.
            rest_url: Base URL of the REST API, without a trailing slash.
            graphql_url: URL of the GraphQL endpoint.
            timeout_seconds: Timeout of each HTTP request.
            retry: Retry policy for transient failures; `RetryPolicy()` when None.
        """
        self.rest_url = rest_url.rstrip("/")
        self.graphql_url = graphql_url
        self.retry = retry if retry is not None else RetryPolicy()
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_seconds,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def rest(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        creates: bool = False,
    ) -> Any:
        """Send a REST request and return its decoded JSON body; None for 404 and empty bodies.

        Args:
            method: HTTP method.
            path: Path below the base URL, such as "/pods".
            body: JSON body to send.
            params: Query parameters.
            creates: Whether the request creates something; see the module docstring.

        Raises:
            OutOfCapacity: RunPod has no capacity for the request.
            RequestOutcomeUnknown: `creates` is set and the response leaves the outcome unknown.
            TransientProviderError: The request failed transiently on every attempt.
            PermanentProviderError: RunPod rejected the request.
        """
        url = f"{self.rest_url}{path}"
        response = await self._send(method, url, body=body, params=params, creates=creates)
        if response.status_code == 404:
            return None
        return _decode(response) if response.content else None

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, creates: bool = False
    ) -> dict[str, Any]:
        """Send a GraphQL query or mutation and return its `data` object.

        Raises:
            Same as `rest`; a GraphQL error in a 200 response is classified by its message.
        """
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables

        for attempt in range(1, self.retry.max_attempts + 1):
            response = await self._send(
                "POST", self.graphql_url, body=payload, params=None, creates=creates
            )
            decoded = _decode(response)
            errors = decoded.get("errors") if isinstance(decoded, dict) else None
            if not errors:
                return decoded.get("data") or {}

            message = "; ".join(str(error.get("message", error)) for error in errors)
            if _NO_CAPACITY.search(message):
                raise OutOfCapacity(f"RunPod has no capacity: {message}")
            if not _TRANSIENT_GRAPHQL.search(message):
                raise PermanentProviderError(f"RunPod rejected the GraphQL request: {message}")
            if creates:
                raise RequestOutcomeUnknown(f"RunPod failed the GraphQL mutation: {message}")
            if attempt < self.retry.max_attempts:
                await self._wait_before_retry("POST", self.graphql_url, message, attempt, None)

        raise TransientProviderError(
            f"RunPod GraphQL failed {self.retry.max_attempts} times: {message}"
        )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        creates: bool,
    ) -> httpx.Response:
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                response = await self._client.request(method, url, json=body, params=params)
            except httpx.TransportError as error:
                reason = f"{type(error).__name__}: {error}"
                if creates:
                    raise RequestOutcomeUnknown(
                        f"RunPod {method} {url} failed with {reason}"
                    ) from error
                if attempt == self.retry.max_attempts:
                    raise TransientProviderError(
                        f"RunPod {method} {url} failed {attempt} times; last error {reason}"
                    ) from error
                await self._wait_before_retry(method, url, reason, attempt, None)
                continue

            status = response.status_code
            if status < 400 or status == 404:
                return response

            message = _error_message(response)
            if _NO_CAPACITY.search(message):
                raise OutOfCapacity(f"RunPod has no capacity: {message}")
            if status in (401, 403):
                raise PermanentProviderError(
                    f"RunPod rejected the API key (HTTP {status}) for {method} {url}: {message};"
                    " check CAC_RUNPOD_API_KEY"
                )
            if status != 429 and status < 500:
                raise PermanentProviderError(
                    f"RunPod rejected {method} {url} with HTTP {status}: {message}"
                )
            if creates and status != 429:
                raise RequestOutcomeUnknown(
                    f"RunPod responded to {method} {url} with HTTP {status}: {message}"
                )
            if attempt == self.retry.max_attempts:
                raise TransientProviderError(
                    f"RunPod responded to {method} {url} with HTTP {status} {attempt} times: {message}"
                )
            retry_after = _retry_after_seconds(response) if status == 429 else None
            await self._wait_before_retry(method, url, f"HTTP {status}", attempt, retry_after)

        raise AssertionError("unreachable: the loop returns or raises on its last attempt")

    async def _wait_before_retry(
        self, method: str, url: str, reason: str, attempt: int, retry_after: float | None
    ) -> None:
        delay = self.retry.backoff(attempt)
        if retry_after is not None:
            delay = min(retry_after, self.retry.max_backoff_seconds)
        logger.warning(
            "RunPod %s %s failed with %s; retrying in %.2f s (attempt %d of %d)",
            method,
            url,
            reason,
            delay,
            attempt + 1,
            self.retry.max_attempts,
        )
        await asyncio.sleep(delay)


def _decode(response: httpx.Response) -> Any:
    # Prices arrive as JSON numbers; parsing them as Decimal keeps them exact.
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError as error:
        raise TransientProviderError(
            f"RunPod responded to {response.request.method} {response.request.url} with"
            f" invalid JSON: {response.text[:_MAX_ERROR_TEXT]!r}"
        ) from error


def _error_message(response: httpx.Response) -> str:
    # RunPod's OpenAPI document gives no schema for error bodies. This reads an "error" or
    # "message" string of a JSON object, or GraphQL's "errors", and falls back to the text.
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MAX_ERROR_TEXT] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return body[key][:_MAX_ERROR_TEXT]
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(error.get("message", error)) for error in errors)[:_MAX_ERROR_TEXT]
    return response.text[:_MAX_ERROR_TEXT]


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())

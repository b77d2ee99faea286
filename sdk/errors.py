"""Errors that the SDK raises besides the standard ones."""

from typing import Any

import httpx

from sdk.models import Job


class ApiError(Exception):
    """The API, or the object store behind a presigned URL, returned an error status,
    described by an RFC 9457 problem.

    The API sends every error as `application/problem+json`. A response from something else,
    such as a proxy's 502 page, gets `type` "about:blank", the status's reason phrase as
    `title` and the body's text as `detail`.
    """

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        type: str = "about:blank",
        title: str = "",
        instance: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        """HTTP status code of the response."""
        self.detail = detail
        """Explanation of the error; for a 422, the invalid fields and the reasons."""
        self.type = type
        """URI of the problem type, such as
        "https://compute-as-credit.dev/problems/validation-error"."""
        self.title = title
        """Summary of the problem type."""
        self.instance = instance
        """Path of the request that failed, when the API sent it."""
        self.errors = errors or []
        """For a 422, each invalid field: `in` (body, query, path or header), `field` (a dotted
        path such as "agentSpec.cmd.0"), `detail`, `type` and, unless it was missing, the
        rejected `input`. Empty for other errors."""


class WaitTimeout(TimeoutError):
    """A job was not final and settled when `wait` reached its timeout."""

    def __init__(self, job: Job, timeout: float) -> None:
        if job.is_final:
            message = f"job {job.job_id} is {job.status} but not settled after {timeout} s"
        else:
            message = f"job {job.job_id} is still {job.status} after {timeout} s"
        super().__init__(message)
        self.job = job
        """The job as the last poll returned it."""
        self.timeout = timeout
        """Seconds that `wait` waited."""


def error_from_response(response: httpx.Response) -> ApiError:
    """Build the ApiError of an error response from its problem details, if it has any."""
    title = response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        return ApiError(response.status_code, response.text, title=title)
    if not isinstance(body, dict):
        return ApiError(response.status_code, response.text, title=title)

    errors = body.get("errors")
    return ApiError(
        response.status_code,
        str(body.get("detail", response.text)),
        type=str(body.get("type", "about:blank")),
        title=str(body.get("title", title)),
        instance=body.get("instance"),
        errors=errors if isinstance(errors, list) else None,
    )

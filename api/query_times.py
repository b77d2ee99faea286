"""Times in query strings: ISO 8601 with a timezone, never a bare number."""

from datetime import UTC, datetime

from api.errors import field_error

EXAMPLE = "such as 2026-01-01T00:00:00Z"
MAX_LENGTH = 64
"""Longest accepted query time, in characters; an ISO 8601 time needs at most 35."""


def parse_query_time(value: str, name: str) -> datetime:
    """Parse the query parameter `name` as an ISO 8601 time with a timezone, in UTC.

    A string rather than a datetime parameter, because pydantic would also read a number such
    as 0 as seconds since the epoch, which no caller means.

    Raises:
        RequestValidationError: a 422 naming the parameter, for any other value.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise field_error(("query", name), f"{value!r} is not an ISO 8601 time, {EXAMPLE}") from None
    if parsed.utcoffset() is None:
        raise field_error(("query", name), f"{value!r} has no timezone; add one, {EXAMPLE}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise field_error(("query", name), f"{value!r} is out of range in UTC") from None

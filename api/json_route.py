"""A route class that parses JSON request bodies with exact decimals instead of floats.

FastAPI parses a JSON body with `json.loads`, which turns `12.1` into a float before any
validator runs, and a float cannot represent most decimal fractions. Routes built with
`DecimalJSONRoute` see every JSON number with a fraction or exponent as a `Decimal`. They also
see the non-standard constants `NaN`, `Infinity` and `-Infinity` as the `Decimal` values of
the same name, so that validators reject them with a field-level 422, not a parse error.
A body whose strings escape a lone UTF-16 surrogate (`"\\ud800"`), which JSON allows but no
text encoding can store, is rejected as invalid JSON.
"""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DecimalJSONRequest(Request):
    """A request whose `json()` parses numbers with a fraction or exponent as `Decimal`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            parsed = json.loads(body, parse_float=Decimal, parse_constant=Decimal)
            _reject_lone_surrogates(parsed, body)
            self._json = parsed
        return self._json


def _reject_lone_surrogates(value: Any, body: bytes) -> None:
    """Raise JSONDecodeError, which FastAPI reports as a 422, for a string with a lone
    surrogate anywhere in `value`."""
    strings = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            strings.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    for text in strings:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            document = body.decode("utf-8", errors="replace")
            raise json.JSONDecodeError(
                "a string contains a lone UTF-16 surrogate escape, which is not text",
                document,
                0,
            ) from None


class DecimalJSONRoute(APIRoute):
    """An APIRoute whose handler receives a `DecimalJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle_with_decimals(request: Request) -> Response:
            return await handler(DecimalJSONRequest(request.scope, request.receive))

        return handle_with_decimals

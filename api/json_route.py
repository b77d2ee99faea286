"""A route class that parses JSON request bodies with exact decimals instead of floats.

FastAPI parses a JSON body with `json.loads`, which turns `12.1` into a float before any
validator runs, and a float cannot represent most decimal fractions. Routes built with
`DecimalJSONRoute` see every JSON number with a fraction or exponent as a `Decimal`. They also
see the non-standard constants `NaN`, `Infinity` and `-Infinity` as the `Decimal` values of
the same name, so that validators reject them with a field-level 422, not a parse error.
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
            self._json = json.loads(body, parse_float=Decimal, parse_constant=Decimal)
        return self._json


class DecimalJSONRoute(APIRoute):
    """An APIRoute whose handler receives a `DecimalJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle_with_decimals(request: Request) -> Response:
            return await handler(DecimalJSONRequest(request.scope, request.receive))

        return handle_with_decimals

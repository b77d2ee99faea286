"""Credit amounts at the API edge: exact decimals in, decimal strings out.

Amounts arrive as JSON numbers (parsed as `Decimal` by `api.json_route`, never as floats) or
as decimal strings, and leave as strings such as `"12.500000"`, so that no client parses them
into a float either.
"""

import re
from decimal import ROUND_DOWN, Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from ledger.money import CREDIT_DECIMAL_PLACES, MAX_CREDITS, micros_to_credits

# Plain decimal notation with an optional exponent. It rules out the strings that Decimal()
# would also take but no client means as an amount: "NaN", "Infinity", "1_000", " 1".
# ASCII only: `\d` alone would also take digits of other scripts, such as "١٢".
_DECIMAL_STRING = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)

_ONE_MICRO_CREDIT = Decimal(1).scaleb(-CREDIT_DECIMAL_PLACES)


def parse_credits(value: object) -> Decimal:
    """Parse a positive credit amount that micro-credits represent exactly.

    Args:
        value: A `Decimal` or int (a JSON number) or a decimal string. Floats and bools are
            rejected, because a float has already lost the exact value.

    Raises:
        ValueError: the value is of another type, not a finite decimal number, not above zero,
            is above `ledger.money.MAX_CREDITS`, or has a non-zero digit beyond the sixth
            decimal place.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        # A ValueError even for a wrong type, because pydantic reports a TypeError from a
        # validator as a 500, not as a validation error.
        message = "must be a decimal number of credits, as a JSON number or a string"
        raise ValueError(message)  # noqa: TRY004
    if isinstance(value, str):
        if not _DECIMAL_STRING.fullmatch(value):
            raise ValueError(f"{value!r} is not a decimal number such as \"12.5\"")
        value = Decimal(value)

    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if amount <= 0:
        raise ValueError("must be greater than 0")
    if amount > MAX_CREDITS:
        raise ValueError(f"must be at most {MAX_CREDITS} credits")

    # Exact, because below MAX_CREDITS the result has at most 19 digits, well within the
    # default context precision of 28.
    if amount.quantize(_ONE_MICRO_CREDIT, rounding=ROUND_DOWN) != amount:
        raise ValueError(f"must have at most {CREDIT_DECIMAL_PLACES} decimal places")
    return amount


def format_credits(micros: int) -> str:
    """Format micro-credits as a decimal string of credits with six places, such as "1.500000"."""
    return f"{micros_to_credits(micros):f}"


Credits = Annotated[
    Decimal,
    BeforeValidator(parse_credits),
    PlainSerializer(lambda amount: f"{amount:f}", return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_CREDITS},
                # A string of at most six decimal places and above zero.
                {"type": "string", "pattern": r"^(?!0*(\.0*)?$)[0-9]{1,13}(\.[0-9]{1,6})?$"},
            ],
            "description": (
                "Credits with at most six decimal places, as a decimal string or a JSON number;"
                " the schema lists whole numbers, but a number with decimals is accepted too."
            ),
            "examples": ["12.5"],
        }
    ),
]
"""A positive credit amount in a request model, validated by `parse_credits`."""

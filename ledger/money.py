"""Conversion between decimal credits and the ledger's integer micro-credits.

The ledger stores every amount as an integer number of micro-credits, so arithmetic on it is
exact. Decimals appear only at the edges (API requests, command-line input, display), and this
module is the single place where they cross into integers.
"""

from decimal import Decimal, InvalidOperation

MICROS_PER_CREDIT = 1_000_000
"""Micro-credits in one credit."""

CREDIT_DECIMAL_PLACES = 6
"""Decimal places of a credit amount that micro-credits can represent."""

MAX_CREDITS = 10**12
"""Largest credit amount accepted from input; anything above it is a mistake, not a payment."""

MAX_MICROS = MAX_CREDITS * MICROS_PER_CREDIT
"""`MAX_CREDITS` in micro-credits (10**18), which fits a signed 64-bit column."""


def credits_to_micros(value: Decimal | str | int) -> int:
    """Convert a credit amount to micro-credits exactly.

    Args:
        value: Non-negative credits, as a `Decimal`, a decimal string such as `"12.5"`, or an
            int. Floats are not accepted because they cannot hold most decimal fractions.

    Returns:
        The amount in micro-credits.

    Raises:
        TypeError: `value` is a float, a bool or another type.
        ValueError: `value` is not a number, is NaN or infinite, is negative, has a non-zero
            digit beyond the sixth decimal place, or is above `MAX_CREDITS`.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(
            f"credit amount must be a Decimal, str or int, not {type(value).__name__}"
        )

    if isinstance(value, int):
        return _check_range(value * MICROS_PER_CREDIT, value)

    if isinstance(value, str):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"invalid credit amount {value!r}: not a decimal number") from None
    else:
        amount = value

    if amount.is_nan() or amount.is_infinite():
        raise ValueError(f"invalid credit amount {value!r}: must be a finite number")
    if amount.is_zero():
        return 0
    if amount < 0:
        raise ValueError(f"invalid credit amount {value!r}: must not be negative")
    if amount.adjusted() >= len(str(MAX_CREDITS)):
        # A coarse check before any scaling, so that an input like "1e999999999" never builds
        # a huge integer; `_check_range` applies the exact limit.
        raise ValueError(f"invalid credit amount {value!r}: above the maximum {MAX_CREDITS}")

    # Integer arithmetic on the digits, because Decimal operations round to the context
    # precision (28 digits by default) and could silently drop a trailing fraction.
    _, digits, exponent = amount.as_tuple()
    coefficient = int("".join(map(str, digits)))
    shift = exponent + CREDIT_DECIMAL_PLACES
    if shift >= 0:
        micros = coefficient * 10**shift
    else:
        # A coefficient with fewer digits than the surplus places cannot end in that many
        # zeros, which also keeps 10**-shift small.
        if -shift > len(digits) or coefficient % 10**-shift != 0:
            raise ValueError(
                f"invalid credit amount {value!r}: more than {CREDIT_DECIMAL_PLACES} decimal"
                " places"
            )
        micros = coefficient // 10**-shift

    return _check_range(micros, value)


def micros_to_credits(micros: int) -> Decimal:
    """Convert micro-credits to credits exactly, with six decimal places.

    Args:
        micros: An amount in micro-credits; negative values (such as the platform funding
            balance) are allowed.

    Returns:
        The amount in credits, for example `Decimal("1.500000")` for 1_500_000.

    Raises:
        TypeError: `micros` is not an int.
    """
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise TypeError(f"micro-credits must be an int, not {type(micros).__name__}")

    # Built from a string so that no context rounding applies, whatever the size.
    return Decimal(f"{micros}E-{CREDIT_DECIMAL_PLACES}")


def _check_range(micros: int, value: Decimal | str | int) -> int:
    if micros < 0:
        raise ValueError(f"invalid credit amount {value!r}: must not be negative")
    if micros > MAX_MICROS:
        raise ValueError(f"invalid credit amount {value!r}: above the maximum {MAX_CREDITS}")
    return micros

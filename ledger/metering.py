"""Cost of a metered segment of usage, in integer micro-credits.

A segment is a stretch of time that one instance ran at one hourly price. Its cost is:

1. billed seconds = max(seconds, minimum_seconds), rounded up to a multiple of
   increment_seconds. Per-second billing is increment 1; per-minute billing is increment 60;
   a first-minute minimum is minimum 60.
2. cost = ceil(price_per_hour_micros * billed seconds / 3600).

Rounding goes up in both steps, so a started increment is billed in full and a fraction of a
micro-credit is charged as one. Only integer arithmetic is used, so the result is exact.
A segment of 0 seconds with no minimum costs 0.
"""

SECONDS_PER_HOUR = 3600


def segment_cost_micros(
    *,
    price_per_hour_micros: int,
    seconds: int,
    increment_seconds: int = 1,
    minimum_seconds: int = 0,
) -> int:
    """Compute the cost of one segment of usage by the rule in the module docstring.

    Args:
        price_per_hour_micros: Price of the instance per hour, in micro-credits.
        seconds: Seconds that the instance ran in this segment.
        increment_seconds: Billing increment. Billed seconds are rounded up to a multiple of
            it. Default 1 (per-second billing).
        minimum_seconds: Seconds billed at least, however short the segment. Default 0.

    Returns:
        The cost in micro-credits.

    Raises:
        TypeError: an argument is not an int.
        ValueError: a price, duration or minimum is negative, or the increment is below 1.
    """
    arguments = {
        "price_per_hour_micros": price_per_hour_micros,
        "seconds": seconds,
        "increment_seconds": increment_seconds,
        "minimum_seconds": minimum_seconds,
    }
    for name, value in arguments.items():
        # A float here would make the cost a float, which money never is.
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")

    if price_per_hour_micros < 0:
        raise ValueError(f"price_per_hour_micros must not be negative, got {price_per_hour_micros}")
    if seconds < 0:
        raise ValueError(f"seconds must not be negative, got {seconds}")
    if increment_seconds < 1:
        raise ValueError(f"increment_seconds must be at least 1, got {increment_seconds}")
    if minimum_seconds < 0:
        raise ValueError(f"minimum_seconds must not be negative, got {minimum_seconds}")

    billed_seconds = max(seconds, minimum_seconds)
    billed_seconds = _ceil_div(billed_seconds, increment_seconds) * increment_seconds

    return _ceil_div(price_per_hour_micros * billed_seconds, SECONDS_PER_HOUR)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)

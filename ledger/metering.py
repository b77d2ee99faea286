"""Billing rules of the providers, and the cost of metered usage in integer micro-credits.

A segment is a stretch of time that one instance ran at one hourly price. Under a
`BillingRule(increment_seconds, minimum_seconds)` its cost is:

1. billed seconds = max(seconds, minimum_seconds), rounded up to a multiple of
   increment_seconds. Per-second billing is increment 1; per-minute billing is increment 60;
   a first-minute minimum is minimum 60.
2. cost = ceil(price_per_hour_micros * billed seconds / 3600).

Rounding goes up in both steps, so a started increment is billed in full and a fraction of a
micro-credit is charged as one. Only integer arithmetic is used, so the result is exact.
A segment of 0 seconds with no minimum costs 0.

Settlement never captures more than the job's hold: `capped_capture` splits a cost into what
to capture, what to release and what could not be charged.
"""

from dataclasses import dataclass

SECONDS_PER_HOUR = 3600


def _require_int(name: str, value: object) -> None:
    # A float here would make a cost a float, which money never is.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True)
class BillingRule:
    """A provider's rule for turning run time into billed time."""

    increment_seconds: int = 1
    """Billed seconds are rounded up to a multiple of this; 1 bills every second, 60 every
    started minute. Default 1."""

    minimum_seconds: int = 0
    """Seconds billed at least, however short the run. Default 0."""

    def __post_init__(self) -> None:
        _require_int("increment_seconds", self.increment_seconds)
        _require_int("minimum_seconds", self.minimum_seconds)
        if self.increment_seconds < 1:
            raise ValueError(f"increment_seconds must be at least 1, got {self.increment_seconds}")
        if self.minimum_seconds < 0:
            raise ValueError(f"minimum_seconds must not be negative, got {self.minimum_seconds}")

    def billed_seconds(self, seconds: int) -> int:
        """Return the seconds billed for `seconds` of run time (step 1 of the module docstring).

        Raises:
            TypeError: `seconds` is not an int.
            ValueError: `seconds` is negative.
        """
        _require_int("seconds", seconds)
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        billed = max(seconds, self.minimum_seconds)
        return _ceil_div(billed, self.increment_seconds) * self.increment_seconds

    def cost_micros(self, *, price_per_hour_micros: int, seconds: int) -> int:
        """Compute the cost of one segment of usage, rounded up to the micro-credit.

        Args:
            price_per_hour_micros: Price of the instance per hour, in micro-credits.
            seconds: Seconds that the instance ran in this segment.

        Returns:
            The cost in micro-credits.

        Raises:
            TypeError: an argument is not an int.
            ValueError: the price or the duration is negative.
        """
        _require_int("price_per_hour_micros", price_per_hour_micros)
        if price_per_hour_micros < 0:
            raise ValueError(
                f"price_per_hour_micros must not be negative, got {price_per_hour_micros}"
            )
        billed = self.billed_seconds(seconds)
        return _ceil_div(price_per_hour_micros * billed, SECONDS_PER_HOUR)


PER_SECOND = BillingRule(increment_seconds=1, minimum_seconds=0)
"""Every second is billed, and nothing more."""

PER_MINUTE = BillingRule(increment_seconds=60, minimum_seconds=0)
"""Every started minute is billed in full."""

PER_SECOND_FIRST_MINUTE = BillingRule(increment_seconds=1, minimum_seconds=60)
"""Every second is billed, but at least one minute."""

BILLING_RULES = {
    "per_second": PER_SECOND,
    "per_minute": PER_MINUTE,
    "per_second_first_minute": PER_SECOND_FIRST_MINUTE,
}
"""The named rules, by the name a provider's configuration can use."""

PROVIDER_BILLING_RULES = {
    "local": PER_SECOND,
    "fake": PER_SECOND,
    # RunPod's billing documentation: compute is billed per second.
    "runpod": PER_SECOND,
    # NOTE: assumed from AWS's per-second billing of Linux instances with a one-minute
    # minimum; not checked against current AWS pricing pages, and other platforms differ.
    "aws": PER_SECOND_FIRST_MINUTE,
}
"""Billing rule of each provider adapter, by provider name."""


def billing_rule_for(provider: str, *, minimum_billed_seconds: int = 0) -> BillingRule:
    """Return the billing rule of a provider, with an offer's own minimum applied.

    Args:
        provider: Provider name, as in `providers.base.Offer.provider`. A provider without an
            entry in `PROVIDER_BILLING_RULES` is billed per second.
        minimum_billed_seconds: The offer's stated minimum; the larger of it and the rule's
            minimum applies.
    """
    rule = PROVIDER_BILLING_RULES.get(provider, PER_SECOND)
    if minimum_billed_seconds <= rule.minimum_seconds:
        return rule
    return BillingRule(
        increment_seconds=rule.increment_seconds, minimum_seconds=minimum_billed_seconds
    )


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
    rule = BillingRule(increment_seconds=increment_seconds, minimum_seconds=minimum_seconds)
    return rule.cost_micros(price_per_hour_micros=price_per_hour_micros, seconds=seconds)


@dataclass(frozen=True)
class CappedCapture:
    """A job's cost split against its hold, in micro-credits."""

    capture_micros: int
    """Amount to capture: the cost, but at most the hold."""

    release_micros: int
    """Amount to release: what the capture leaves of the hold."""

    over_micros: int
    """Cost beyond the hold, which is not charged; 0 when the hold covered the cost."""


def capped_capture(cost_micros: int, held_micros: int) -> CappedCapture:
    """Split a job's cost into the capture, the release and the part beyond the hold.

    `capture + release == held` always, and `capture + over == cost`.

    Raises:
        TypeError: an argument is not an int.
        ValueError: an argument is negative.
    """
    _require_int("cost_micros", cost_micros)
    _require_int("held_micros", held_micros)
    if cost_micros < 0:
        raise ValueError(f"cost_micros must not be negative, got {cost_micros}")
    if held_micros < 0:
        raise ValueError(f"held_micros must not be negative, got {held_micros}")

    captured = min(cost_micros, held_micros)
    return CappedCapture(
        capture_micros=captured,
        release_micros=held_micros - captured,
        over_micros=cost_micros - captured,
    )

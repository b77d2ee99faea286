"""Conversion between provider prices in US dollars and the ledger's integer micro-credits.

Cloud providers quote prices in USD. The system charges credits at a configured rate of
credits per USD (`CAC_CREDITS_PER_USD`). Both conversions use exact rational arithmetic, so
no float and no Decimal context precision is involved.
"""

import math
from decimal import Decimal
from fractions import Fraction

from ledger.money import MICROS_PER_CREDIT

USD_DECIMAL_PLACES = 6
"""Decimal places of a USD amount that `micros_to_usd` returns."""


def usd_to_micros(usd: Decimal, credits_per_usd: Decimal) -> int:
    """Convert a USD amount to micro-credits, rounding a fraction of a micro-credit up.

    Rounding up means a price is never quoted below what the provider charges.

    Raises:
        ValueError: `usd` is negative or not finite, or `credits_per_usd` is not positive.
    """
    _check_rate(credits_per_usd)
    if not usd.is_finite() or usd < 0:
        raise ValueError(f"invalid USD amount {usd}: must be a finite, non-negative number")

    micros = Fraction(usd) * Fraction(credits_per_usd) * MICROS_PER_CREDIT
    return math.ceil(micros)


def micros_to_usd(micros: int, credits_per_usd: Decimal) -> Decimal:
    """Convert micro-credits back to USD, rounded down to `USD_DECIMAL_PLACES` places.

    For a price that `usd_to_micros` produced from a USD amount with at most six decimal
    places, the result is at least that amount, because the first conversion rounded up.

    Raises:
        ValueError: `micros` is negative, or `credits_per_usd` is not positive.
    """
    _check_rate(credits_per_usd)
    if micros < 0:
        raise ValueError(f"invalid micro-credit amount {micros}: must not be negative")

    usd = Fraction(micros, MICROS_PER_CREDIT) / Fraction(credits_per_usd)
    scaled = math.floor(usd * 10**USD_DECIMAL_PLACES)
    return Decimal(scaled).scaleb(-USD_DECIMAL_PLACES)


def _check_rate(credits_per_usd: Decimal) -> None:
    if not credits_per_usd.is_finite() or credits_per_usd <= 0:
        raise ValueError(
            f"invalid credits per USD {credits_per_usd}: must be a finite, positive number"
        )

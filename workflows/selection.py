"""Offer selection: a pure, deterministic function over quotes, safe to call in workflow code."""

from dataclasses import dataclass

from providers.base import Offer

SECONDS_PER_HOUR = 3600

MINIMUM_AFFORDABLE_SECONDS = 60
"""An offer is dropped when the budget cannot pay for this many seconds of it."""


@dataclass(frozen=True)
class BalancedWeights:
    """Weights of the balanced policy; a lower weighted score wins."""

    price: float = 0.5
    """Weight of the price per hour, scaled to [0, 1] across the offers."""

    start: float = 0.3
    """Weight of the expected start time, scaled to [0, 1] across the offers."""

    reliability: float = 0.2
    """Weight of the estimated provisioning failure rate (1 - reliability)."""


def affordable(offer: Offer, budget_micros: int) -> bool:
    """Return whether the budget pays for the offer's minimum billed time, and at least a minute."""
    seconds = max(offer.minimum_billed_seconds, MINIMUM_AFFORDABLE_SECONDS)
    # Ceiling division in integers: the cost of `seconds` at the hourly price.
    cost = -(-offer.price_per_hour_micros * seconds // SECONDS_PER_HOUR)
    return cost <= budget_micros


def rank_balanced(
    offers: list[Offer], budget_micros: int, weights: BalancedWeights = BalancedWeights()
) -> list[Offer]:
    """Return the affordable offers, best first by weighted price, start time and reliability.

    Ties are broken by provider, region and instance type so the order never depends on the
    order in which the quotes arrived.
    """
    candidates = [offer for offer in offers if affordable(offer, budget_micros)]
    if not candidates:
        return []

    prices = [offer.price_per_hour_micros for offer in candidates]
    starts = [offer.start_seconds for offer in candidates]

    def scaled(value: int, values: list[int]) -> float:
        low, high = min(values), max(values)
        return 0.0 if high == low else (value - low) / (high - low)

    def score(offer: Offer) -> tuple:
        weighted = (
            weights.price * scaled(offer.price_per_hour_micros, prices)
            + weights.start * scaled(offer.start_seconds, starts)
            + weights.reliability * (1.0 - offer.reliability)
        )
        return (weighted, offer.price_per_hour_micros, offer.provider, offer.region, offer.instance_type)

    return sorted(candidates, key=score)

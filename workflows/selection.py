"""Offer selection: pure, deterministic functions over quotes, safe to call in workflow code.

Every policy first drops the offers that the job cannot use (see `eligible`) and then orders the
rest, best first. Ties are broken by price, provider, region and instance type, so the order
never depends on the order in which the quotes arrived.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from ledger.metering import billing_rule_for
from providers.base import Offer

MINIMUM_AFFORDABLE_SECONDS = 60
"""An offer is dropped when the budget cannot pay for this many seconds of it."""


class Policy(StrEnum):
    """Ordering rule for the offers that fit a job."""

    BALANCED = "balanced"
    """Lowest weighted score of price, start time and provisioning failure rate."""

    CHEAPEST = "cheapest"
    """Lowest price per hour."""

    FASTEST = "fastest"
    """Shortest expected start time."""


@dataclass(frozen=True)
class BalancedWeights:
    """Weights of the balanced policy; a lower weighted score wins."""

    price: float = 0.5
    """Weight of the price per hour, scaled to [0, 1] across the offers."""

    start: float = 0.3
    """Weight of the expected start time, scaled to [0, 1] across the offers."""

    reliability: float = 0.2
    """Weight of the estimated provisioning failure rate (1 - reliability)."""


@dataclass
class Constraints:
    """Limits a job sets on offers, beyond its GPU type and count."""

    budget_micros: int
    """Micro-credits the job may spend."""

    max_price_per_hour_micros: int | None = None
    """Highest acceptable price per hour; None for no limit."""

    providers: list[str] = field(default_factory=list)
    """Providers the job may run on; empty for any enabled provider."""

    spot_ok: bool = False
    """Whether interruptible (spot) offers are acceptable."""


@dataclass
class Ranking:
    """Offers ordered by a policy, with the reason the first one won."""

    offers: list[Offer]
    """Eligible offers, best first; empty when none is eligible."""

    reason: str
    """Reason the first offer won, or the reason no offer is eligible, for people to read."""


def affordable(offer: Offer, budget_micros: int) -> bool:
    """Return whether the budget pays for a minute of the offer under its provider's billing rule."""
    rule = billing_rule_for(offer.provider, minimum_billed_seconds=offer.minimum_billed_seconds)
    cost = rule.cost_micros(
        price_per_hour_micros=offer.price_per_hour_micros, seconds=MINIMUM_AFFORDABLE_SECONDS
    )
    return cost <= budget_micros


def eligible(offer: Offer, constraints: Constraints) -> str | None:
    """Return why the job cannot use the offer, or None when it can."""
    if constraints.providers and offer.provider not in constraints.providers:
        return "provider not allowed"
    if offer.spot and not constraints.spot_ok:
        return "spot not accepted"
    if (
        constraints.max_price_per_hour_micros is not None
        and offer.price_per_hour_micros > constraints.max_price_per_hour_micros
    ):
        return "over the maximum price"
    if not affordable(offer, constraints.budget_micros):
        return "over the budget"
    return None


def rank_offers(
    offers: list[Offer],
    constraints: Constraints,
    policy: Policy = Policy.BALANCED,
    weights: BalancedWeights = BalancedWeights(),
) -> Ranking:
    """Drop the offers the job cannot use and order the rest by `policy`, best first."""
    rejections: dict[str, int] = {}
    candidates = []
    for offer in offers:
        rejection = eligible(offer, constraints)
        if rejection is None:
            candidates.append(offer)
        else:
            rejections[rejection] = rejections.get(rejection, 0) + 1

    if not candidates:
        if not offers:
            return Ranking(offers=[], reason="no offers")
        summary = ", ".join(f"{count} {why}" for why, count in sorted(rejections.items()))
        return Ranking(offers=[], reason=f"every offer was excluded ({summary})")

    if policy == Policy.CHEAPEST:
        ranked = sorted(candidates, key=lambda offer: (offer.price_per_hour_micros, _tiebreak(offer)))
        reason = "cheapest price per hour"
    elif policy == Policy.FASTEST:
        ranked = sorted(
            candidates,
            key=lambda offer: (offer.start_seconds, offer.price_per_hour_micros, _tiebreak(offer)),
        )
        reason = "shortest expected start time"
    else:
        ranked = rank_balanced(candidates, constraints.budget_micros, weights)
        reason = (
            f"best balanced score (weights: price {weights.price}, start {weights.start}, "
            f"reliability {weights.reliability})"
        )

    best = ranked[0]
    reason = (
        f"{best.provider}/{best.instance_type} in {best.region} won by {policy.value} policy: "
        f"{reason}, out of {len(ranked)} eligible of {len(offers)} offers"
    )
    return Ranking(offers=ranked, reason=reason)


def rank_balanced(
    offers: list[Offer], budget_micros: int, weights: BalancedWeights = BalancedWeights()
) -> list[Offer]:
    """Return the affordable offers, best first by weighted price, start time and reliability."""
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
        return (weighted, offer.price_per_hour_micros, _tiebreak(offer))

    return sorted(candidates, key=score)


def _tiebreak(offer: Offer) -> tuple:
    return (offer.provider, offer.region, offer.instance_type, offer.spot)

"""Selection policies: each picks its own winner from the same quotes."""

import pytest

from providers.base import Offer
from workflows.selection import Constraints, Policy, rank_offers

CREDIT = 1_000_000


def offer(provider: str, price_credits: float, start_seconds: int, reliability: float, spot=False):
    return Offer(
        provider=provider,
        instance_type=f"{provider}-a100",
        region="r1",
        gpu_type="A100",
        gpu_count=1,
        spot=spot,
        price_per_hour_micros=int(price_credits * CREDIT),
        start_seconds=start_seconds,
        reliability=reliability,
    )


QUOTES = [
    offer("cheap", 1.0, 600, 0.5),  # cheapest, slow and unreliable
    offer("quick", 4.0, 5, 0.99),  # fastest and dear
    offer("steady", 1.5, 60, 0.99),  # a little dearer than cheap, quick enough, reliable
]


@pytest.mark.parametrize(
    ("policy", "winner"),
    [
        (Policy.CHEAPEST, "cheap"),
        (Policy.FASTEST, "quick"),
        (Policy.BALANCED, "steady"),
    ],
)
def test_policy_picks_its_winner(policy, winner):
    ranking = rank_offers(QUOTES, Constraints(budget_micros=100 * CREDIT), policy)

    assert ranking.offers[0].provider == winner
    assert len(ranking.offers) == 3
    assert ranking.reason.startswith(f"{winner}/{winner}-a100 in r1 won by {policy.value} policy")


def test_ranking_ignores_quote_order():
    forward = rank_offers(QUOTES, Constraints(budget_micros=100 * CREDIT))
    backward = rank_offers(list(reversed(QUOTES)), Constraints(budget_micros=100 * CREDIT))

    assert forward.offers == backward.offers


@pytest.mark.parametrize(
    ("constraints", "expected_providers", "reason"),
    [
        (Constraints(budget_micros=100 * CREDIT, providers=["quick"]), ["quick"], None),
        (
            Constraints(budget_micros=100 * CREDIT, max_price_per_hour_micros=2 * CREDIT),
            ["cheap", "steady"],
            None,
        ),
        (
            Constraints(budget_micros=100 * CREDIT, max_price_per_hour_micros=CREDIT // 2),
            [],
            "every offer was excluded (3 over the maximum price)",
        ),
        # One minute of the cheapest offer costs 16,667 micro-credits.
        (Constraints(budget_micros=16_666), [], "every offer was excluded (3 over the budget)"),
    ],
)
def test_constraints_exclude_offers(constraints, expected_providers, reason):
    ranking = rank_offers(QUOTES, constraints)

    assert [o.provider for o in ranking.offers] == expected_providers
    if reason is not None:
        assert ranking.reason == reason


def test_spot_offer_needs_spot_ok():
    quotes = [offer("cheap", 1.0, 60, 0.9, spot=True), offer("steady", 1.5, 60, 0.9)]

    without_spot = rank_offers(quotes, Constraints(budget_micros=CREDIT), Policy.CHEAPEST)
    with_spot = rank_offers(quotes, Constraints(budget_micros=CREDIT, spot_ok=True), Policy.CHEAPEST)

    assert [o.spot for o in without_spot.offers] == [False]
    assert [o.spot for o in with_spot.offers] == [True, False]


def test_no_offers_gives_reason():
    assert rank_offers([], Constraints(budget_micros=CREDIT)).reason == "no offers"

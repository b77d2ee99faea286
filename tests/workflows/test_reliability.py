"""Learned provider reliability and its use in quotes."""

from activities.jobs import JobActivities
from activities.reliability import ReliabilityTracker
from activities.types import QuoteInput
from providers.base import QuoteRequest
from providers.fake import FakeProvider


def test_tracker_without_history_has_no_estimate():
    assert ReliabilityTracker().estimate("fake") is None


def test_tracker_estimates_with_laplace_rule():
    tracker = ReliabilityTracker()
    for succeeded in [True, True, True, False]:
        tracker.record("fake", succeeded)

    assert tracker.estimate("fake") == 4 / 6


def test_tracker_forgets_beyond_window():
    tracker = ReliabilityTracker(window=3)
    for succeeded in [False, False, True, True, True]:
        tracker.record("fake", succeeded)

    assert tracker.estimate("fake") == 4 / 5


async def test_quotes_carry_learned_reliability(ledger_engine):
    provider = FakeProvider(
        price_per_hour_micros=1_000_000, gpu_types=["A100"], start_seconds=0, run_seconds=60
    )
    activities = JobActivities(
        providers={"fake": provider}, ledger_engine=ledger_engine, poll_interval_seconds=5
    )
    activities.reliability.record("fake", succeeded=False)

    output = await activities.get_quotes(
        QuoteInput(provider="fake", request=QuoteRequest(gpu_type="A100", gpu_count=1))
    )

    assert [offer.reliability for offer in output.offers] == [1 / 3]

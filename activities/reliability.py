"""Provisioning reliability per provider, learned from recent launch outcomes."""

from collections import deque

WINDOW = 50
"""Launch outcomes remembered per provider."""


class ReliabilityTracker:
    """Estimates each provider's chance that a launch succeeds from its last `WINDOW` launches.

    The estimate is (successes + 1) / (launches + 2), Laplace's rule of succession, so a
    provider with no history starts at 0.5 and one failure does not condemn it.

    NOTE: outcomes live in this worker's memory only, so a restarted worker starts over and
    several workers each learn their own estimate. A table in the ledger database would share
    them.
    """

    def __init__(self, window: int = WINDOW) -> None:
        self._outcomes: dict[str, deque[bool]] = {}
        self._window = window

    def record(self, provider: str, succeeded: bool) -> None:
        """Remember the outcome of one launch at `provider`."""
        self._outcomes.setdefault(provider, deque(maxlen=self._window)).append(succeeded)

    def estimate(self, provider: str) -> float | None:
        """Return the estimated launch success rate, or None with no launches recorded."""
        outcomes = self._outcomes.get(provider)
        if not outcomes:
            return None
        return (sum(outcomes) + 1) / (len(outcomes) + 2)

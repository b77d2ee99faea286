"""An independent model of the ledger's rules, in plain Python, for the property tests.

It keeps lots, holds and platform totals as the ledger's docstrings describe them, predicts
the outcome of every operation, and can replay a tenant's statement to check that each posted
transaction was allowed when it was posted. It shares no code with the ledger.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from ledger import (
    DuplicateHold,
    HoldExceeded,
    InsufficientFunds,
    RefundExceeded,
    UnknownHold,
)

PAST = datetime(2000, 1, 1, tzinfo=UTC)
"""An expiry before the tests run: holds never draw on such a lot."""

NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass
class Lot:
    lot_id: int
    """Transaction id of the grant or refund that created the lot; it orders lots like the
    ledger's lot ids do."""

    tenant_id: str
    expires_at: datetime | None
    remaining: int
    expired: bool = False

    def order_key(self) -> tuple:
        return (self.expires_at is None, self.expires_at or NEVER, self.lot_id)

    def spendable(self, now: datetime) -> int:
        if self.expired or (self.expires_at is not None and self.expires_at <= now):
            return 0
        return self.remaining


@dataclass
class Part:
    lot: Lot
    amount: int
    captured: int = 0
    released: int = 0

    @property
    def unsettled(self) -> int:
        return self.amount - self.captured - self.released


@dataclass
class Hold:
    tenant_id: str
    amount: int
    captured: int = 0
    released: int = 0
    refunded: int = 0
    parts: list[Part] = field(default_factory=list)

    @property
    def unsettled(self) -> int:
        return self.amount - self.captured - self.released


@dataclass(frozen=True)
class Rejection:
    error: type
    limit: int | None = None


@dataclass(frozen=True)
class PredictedExpiry:
    tenant_id: str
    key: str
    amount: int
    job_id: str | None


class LedgerModel:
    """Balances of every tenant and of the platform, from the rules alone."""

    def __init__(self) -> None:
        self.lots: dict[int, Lot] = {}
        self.holds: dict[str, Hold] = {}
        self.funding = 0
        self.revenue = 0
        self.expired = 0

    def available(self, tenant_id: str) -> int:
        return sum(lot.remaining for lot in self.lots.values() if lot.tenant_id == tenant_id)

    def held(self, tenant_id: str) -> int:
        return sum(h.unsettled for h in self.holds.values() if h.tenant_id == tenant_id)

    def spent(self, tenant_id: str) -> int:
        return sum(h.captured - h.refunded for h in self.holds.values() if h.tenant_id == tenant_id)

    def spendable(self, tenant_id: str, now: datetime) -> int:
        return sum(lot.spendable(now) for lot in self._lots_of(tenant_id))

    # Checks: None when the operation is allowed, else the rejection the ledger must raise.

    def check_hold(
        self, tenant_id: str, job_id: str, amount: int, now: datetime
    ) -> Rejection | None:
        if job_id in self.holds:
            return Rejection(DuplicateHold)
        spendable = self.spendable(tenant_id, now)
        if spendable < amount:
            return Rejection(InsufficientFunds, spendable)
        return None

    def check_settle(self, tenant_id: str, job_id: str, amount: int) -> Rejection | None:
        hold = self.holds.get(job_id)
        if hold is None or hold.tenant_id != tenant_id:
            return Rejection(UnknownHold)
        if hold.unsettled < amount:
            return Rejection(HoldExceeded, hold.unsettled)
        return None

    def check_refund(self, tenant_id: str, job_id: str, amount: int) -> Rejection | None:
        hold = self.holds.get(job_id)
        if hold is None or hold.tenant_id != tenant_id:
            return Rejection(UnknownHold)
        refundable = hold.captured - hold.refunded
        if refundable < amount:
            return Rejection(RefundExceeded, refundable)
        return None

    # Effects of allowed operations.

    def grant(self, transaction_id: int, tenant_id: str, amount: int, expires_at) -> None:
        self.funding -= amount
        self.lots[transaction_id] = Lot(transaction_id, tenant_id, expires_at, amount)

    def hold(self, tenant_id: str, job_id: str, amount: int, now: datetime) -> None:
        hold = Hold(tenant_id=tenant_id, amount=amount)
        left = amount
        for lot in sorted(self._lots_of(tenant_id), key=Lot.order_key):
            take = min(lot.spendable(now), left)
            if take == 0:
                continue
            lot.remaining -= take
            hold.parts.append(Part(lot, take))
            left -= take
            if left == 0:
                break
        assert left == 0, "hold allowed beyond the spendable credits"
        self.holds[job_id] = hold

    def capture(self, job_id: str, amount: int) -> None:
        hold = self.holds[job_id]
        hold.captured += amount
        self.revenue += amount
        left = amount
        for part in sorted(hold.parts, key=lambda p: p.lot.order_key()):
            take = min(part.unsettled, left)
            part.captured += take
            left -= take
        assert left == 0

    def release(
        self,
        job_id: str,
        amount: int,
        release_id: int,
        expired_in_ledger: set[int] | None = None,
        latest_sweep: datetime | None = None,
    ) -> list[PredictedExpiry]:
        """Release credits and return the expire transactions the release must post.

        A replay of a concurrent run passes `expired_in_ledger`, the lots that the ledger
        expired credits of on this release. The model then learns a lot's expiry that no
        transaction recorded: `expire_grants` marks a lot with nothing remaining as expired
        without posting. It only accepts this for a lot with nothing remaining whose expiry a
        sweep had reached.
        """
        hold = self.holds[job_id]
        hold.released += amount
        expiries = []
        left = amount
        for part in sorted(hold.parts, key=lambda p: p.lot.order_key(), reverse=True):
            take = min(part.unsettled, left)
            if take == 0:
                continue
            part.released += take
            left -= take
            lot = part.lot
            if (
                expired_in_ledger is not None
                and lot.lot_id in expired_in_ledger
                and not lot.expired
            ):
                assert lot.remaining == 0, f"lot {lot.lot_id} expired with credits left"
                assert latest_sweep is not None and lot.expires_at is not None
                assert lot.expires_at <= latest_sweep, f"lot {lot.lot_id} expired early"
                lot.expired = True
            if lot.expired:
                self.expired += take
                expiries.append(
                    PredictedExpiry(
                        hold.tenant_id, f"expire/{lot.lot_id}/{release_id}", take, job_id
                    )
                )
            else:
                lot.remaining += take
            if left == 0:
                break
        assert left == 0
        return expiries

    def refund(self, transaction_id: int, tenant_id: str, job_id: str, amount: int) -> None:
        self.holds[job_id].refunded += amount
        self.revenue -= amount
        self.lots[transaction_id] = Lot(transaction_id, tenant_id, None, amount)

    def expire(self, now: datetime) -> list[PredictedExpiry]:
        """Expire every due lot, oldest expiry first; return the expiries that post."""
        due = [
            lot
            for lot in self.lots.values()
            if not lot.expired and lot.expires_at is not None and lot.expires_at <= now
        ]
        posted = []
        for lot in sorted(due, key=lambda lot: (lot.expires_at, lot.lot_id)):
            posted.extend(self.expire_lot(lot.lot_id))
        return posted

    def expire_lot(self, lot_id: int) -> list[PredictedExpiry]:
        lot = self.lots[lot_id]
        lot.expired = True
        if lot.remaining == 0:
            return []
        amount, lot.remaining = lot.remaining, 0
        self.expired += amount
        return [PredictedExpiry(lot.tenant_id, f"expire/{lot_id}", amount, None)]

    def _lots_of(self, tenant_id: str) -> list[Lot]:
        return [lot for lot in self.lots.values() if lot.tenant_id == tenant_id]

"""Expiry of granted credits, and the lots that keep it exact.

A tenant's available balance is made of lots (table `lots`). Each grant creates a lot with the
grant's amount and expiry, or none; each refund creates a lot that never expires. A lot's
`remaining` is the part of it that is in the available balance now, so a tenant's lots add up
to its available balance.

- A hold draws on the spendable lots, those with credits remaining and an expiry still in the
  future: soonest expiry first, never-expiring lots last. `hold_lots` records how much it took
  from each.
- A capture spends the hold's parts in the same order. A release returns what is left, in
  reverse order, to the lots the credits came from.
- `expire_grants(now)` expires every lot whose expiry is at or before `now`: it marks the lot
  expired and posts an `expire` transaction, available -> platform `expired`, for the credits
  remaining in it, keyed `expire/{grant transaction id}`. Credits that holds drew from the lot
  stay held, and a capture spends them as usual. A release returns them to available and, in
  the same database transaction, posts another expire transaction that takes them out again,
  keyed `expire/{grant transaction id}/{release transaction id}`. Expired credits therefore
  always leave through a posted transaction; no balance is ever edited.

Expired credits go to the platform's `expired` account rather than back to `funding`, so that
funding still shows the total ever granted and the expired total reads on its own.

A lot past its expiry that `expire_grants` has not reached yet still counts in the available
balance, but holds no longer draw on it. Nothing in the ledger calls `expire_grants` by
itself: run it periodically, for example from a scheduled job.
"""

import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import posting_plpgsql, posting_python
from ledger.db import run_with_reconnect
from ledger.models import EXPIRE, lots
from ledger.operations import uses_plpgsql
from ledger.posting import Outcome, PostedTransaction

logger = logging.getLogger(__name__)


def expire_grants(engine: Engine, *, now: datetime) -> list[PostedTransaction]:
    """Expire every lot whose expiry is at or before `now`, as the module docstring describes.

    Each lot expires in its own database transaction. Running it again, or concurrently, is
    safe: a lot expires once, and its expire transaction has a fixed key.

    Args:
        engine: Ledger database engine.
        now: Time to expire at, timezone-aware. Lots expiring at or before it expire.

    Returns:
        The expire transactions that this call posted, oldest expiry first. A lot with
        nothing left in the available balance is marked expired without a transaction.

    Raises:
        ValueError: `now` has no timezone.
    """
    if now.utcoffset() is None:
        raise ValueError(
            f"now {now.isoformat()} has no timezone; pass an aware datetime such as"
            " datetime.now(UTC)"
        )
    now = now.astimezone(UTC)

    def select_due_lots() -> list[sa.Row]:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(lots.c.id, lots.c.tenant_id, lots.c.transaction_id)
                .where(lots.c.expires_at <= now, lots.c.expired_at.is_(None))
                .order_by(lots.c.expires_at, lots.c.id)
            ).all()

    posted = []
    for lot in run_with_reconnect(engine, select_due_lots):
        outcome = _expire_lot(engine, lot.id, now)
        if outcome.status != "posted":
            continue
        assert outcome.transaction_id is not None and outcome.amount is not None
        posted.append(
            PostedTransaction(
                transaction_id=outcome.transaction_id,
                tenant_id=lot.tenant_id,
                key=f"expire/{lot.transaction_id}",
                kind=EXPIRE,
                job_id=None,
                amount_micros=outcome.amount,
                replayed=False,
            )
        )
        logger.info(
            "expired %d micro-credits of grant %s: tenant=%s transaction=%d",
            outcome.amount,
            lot.transaction_id,
            lot.tenant_id,
            outcome.transaction_id,
        )

    return posted


def _expire_lot(engine: Engine, lot_id: int, now: datetime) -> Outcome:
    if uses_plpgsql(engine):
        return posting_plpgsql.expire_lot(engine, lot_id, now)

    def expire() -> Outcome:
        with engine.begin() as connection:
            return posting_python.expire_lot(connection, lot_id, now)

    return run_with_reconnect(engine, expire)

"""Ledger upkeep that runs on a schedule rather than per job."""

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from temporalio import activity

import ledger


@dataclass
class ExpireGrantsRequest:
    """Input of `expire_grants`."""

    now: str
    """ISO 8601 time, with a timezone, at or before which grants expire: the workflow's clock."""


@dataclass
class ExpireGrantsResult:
    """Output of `expire_grants`."""

    transactions: int
    """Expire transactions posted by this run."""

    expired_micros: int
    """Micro-credits those transactions took out of available balances."""


class MaintenanceActivities:
    """Scheduled ledger activities, bound to the worker's ledger."""

    def __init__(self, *, ledger_engine: Engine) -> None:
        self._engine = ledger_engine

    @activity.defn
    async def expire_grants(self, input: ExpireGrantsRequest) -> ExpireGrantsResult:
        """Post expire transactions for the unspent credits of every grant past its expiry."""
        posted = await asyncio.to_thread(
            ledger.expire_grants, self._engine, now=datetime.fromisoformat(input.now)
        )
        expired = sum(transaction.amount_micros for transaction in posted)
        if posted:
            activity.logger.info(
                "expired %d micro-credits in %d transactions", expired, len(posted)
            )
        return ExpireGrantsResult(transactions=len(posted), expired_micros=expired)

    def all(self) -> list:
        """Return every activity method, for registering on a worker."""
        return [self.expire_grants]

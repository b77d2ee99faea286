"""`ExpireGrantsWorkflow`: one pass of grant expiry, started by a Temporal Schedule."""

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import (
        ExpireGrantsRequest,
        ExpireGrantsResult,
        MaintenanceActivities,
    )

EXPIRE_TIMEOUT = timedelta(minutes=5)


@dataclass
class ExpireGrantsInput:
    """Input of `ExpireGrantsWorkflow`; empty, kept as a dataclass so fields can be added."""


@workflow.defn
class ExpireGrantsWorkflow:
    """Expires the grants that are past their expiry at the workflow's current time."""

    @workflow.run
    async def run(self, _: ExpireGrantsInput) -> ExpireGrantsResult:
        """Run one expiry pass and return what it took out of available balances."""
        return await workflow.execute_activity_method(
            MaintenanceActivities.expire_grants,
            ExpireGrantsRequest(now=workflow.now().isoformat()),
            start_to_close_timeout=EXPIRE_TIMEOUT,
        )

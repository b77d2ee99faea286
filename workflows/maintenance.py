"""Upkeep workflows that Temporal Schedules start: grant expiry and the orphan sweep."""

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import (
        ExpireGrantsRequest,
        ExpireGrantsResult,
        MaintenanceActivities,
    )
    from activities.sweep import SweepActivities, SweepRequest, SweepResult

EXPIRE_TIMEOUT = timedelta(minutes=5)
SWEEP_TIMEOUT = timedelta(minutes=10)


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


@dataclass
class OrphanSweepInput:
    """Input of `OrphanSweepWorkflow`; empty, kept as a dataclass so fields can be added."""


@workflow.defn
class OrphanSweepWorkflow:
    """Terminates the instances at every provider whose job is no longer running."""

    @workflow.run
    async def run(self, _: OrphanSweepInput) -> SweepResult:
        """Run one sweep and return what it terminated."""
        return await workflow.execute_activity_method(
            SweepActivities.sweep_orphans,
            SweepRequest(now=workflow.now().timestamp()),
            start_to_close_timeout=SWEEP_TIMEOUT,
        )

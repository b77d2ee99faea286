"""A workflow and an activity that log, for the tenant log context tests.

Kept apart from the tests because the workflow sandbox re-imports this module.
"""

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow


@dataclass
class TenantOrder:
    """An input that names its tenant, as `JobInput` and `BudgetRequest` do."""

    tenant_id: str
    note: str


@activity.defn
async def log_in_activity(order: TenantOrder) -> None:
    activity.logger.info("activity for %s", order.note)


@activity.defn
async def log_without_tenant(note: str) -> None:
    activity.logger.info("activity without tenant for %s", note)


@workflow.defn
class TenantLoggingWorkflow:
    """Logs once itself, then runs one activity with the tenant and one without."""

    @workflow.run
    async def run(self, order: TenantOrder) -> None:
        workflow.logger.info("workflow for %s", order.note)
        await workflow.execute_activity(
            log_in_activity, order, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.execute_activity(
            log_without_tenant, order.note, start_to_close_timeout=timedelta(seconds=10)
        )

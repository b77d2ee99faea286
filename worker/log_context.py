"""A worker interceptor that adds the tenant to the log lines of workflows and activities.

Temporal's loggers already attach the workflow id and run id. The tenant is known only from
the input: `JobInput`, `BudgetRequest` and `SettleInput` carry a `tenant_id`, so their
workflow and activities log with it. Inputs without one (`ProvisionInput`, for example) log
without it.

In a workflow, the tenant applies to the main run and the tasks it starts. Signal and query
handlers run outside it, so they log without the tenant.
"""

from collections.abc import Sequence
from typing import Any

from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from config.logging import tenant_log_context


class TenantLogInterceptor(Interceptor):
    """Runs each workflow and activity inside `tenant_log_context` with its input's tenant."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TenantActivityInbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _TenantWorkflowInbound


class _TenantActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        with tenant_log_context(tenant_of(input.args)):
            return await super().execute_activity(input)


class _TenantWorkflowInbound(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        # Setting a context variable issues no command, so replay stays deterministic.
        with tenant_log_context(tenant_of(input.args)):
            return await super().execute_workflow(input)


def tenant_of(args: Sequence[Any]) -> str | None:
    """Return the `tenant_id` of the first argument that has a string one, else None."""
    for argument in args:
        tenant_id = getattr(argument, "tenant_id", None)
        if isinstance(tenant_id, str):
            return tenant_id
    return None

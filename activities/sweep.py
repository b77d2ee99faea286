"""The orphan sweep: terminate instances whose job is no longer running.

A job tears its own instance down on every path its workflow controls. The sweep covers the
paths it does not: a workflow terminated by an operator or stopped by its run timeout, and
state lost at a provider. It lists the instances that carry this system's name or tag at every
provider and terminates each one whose job workflow is not running.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from providers.base import ManagedInstance, ProviderClient

logger = logging.getLogger(__name__)


@dataclass
class SweepRequest:
    """Input of `sweep_orphans`."""

    now: float
    """Workflow clock in seconds since the epoch, for simulated providers."""


@dataclass
class SweptInstance:
    """An instance that the sweep terminated."""

    provider: str
    instance_id: str
    job_id: str
    reason: str
    """Reason the instance was an orphan, such as "job workflow is COMPLETED"."""


@dataclass
class SweepResult:
    """Output of `sweep_orphans`."""

    checked: int = 0
    """Managed instances found at all providers."""

    terminated: list[SweptInstance] = field(default_factory=list)


class SweepActivities:
    """The sweep activity, bound to the worker's Temporal client and providers."""

    def __init__(self, *, client: Client, providers: Mapping[str, ProviderClient]) -> None:
        self._client = client
        self._providers = dict(providers)

    @activity.defn
    async def sweep_orphans(self, request: SweepRequest) -> SweepResult:
        """Terminate every managed instance whose job workflow is not running."""
        result = SweepResult()
        for name, provider in self._providers.items():
            list_managed_instances = getattr(provider, "list_managed_instances", None)
            if list_managed_instances is None:
                continue
            for instance in await list_managed_instances():
                result.checked += 1
                reason = await self._orphan_reason(instance)
                if reason is None:
                    continue
                # A provider error here propagates, so Temporal retries the whole sweep, which
                # is safe because terminating a terminated instance succeeds.
                await provider.terminate(instance.instance_id, request.now)
                activity.logger.warning(
                    "terminated orphan instance %s on %s of job %s: %s",
                    instance.instance_id,
                    name,
                    instance.job_id or "unknown",
                    reason,
                )
                result.terminated.append(
                    SweptInstance(
                        provider=name,
                        instance_id=instance.instance_id,
                        job_id=instance.job_id,
                        reason=reason,
                    )
                )
        return result

    async def _orphan_reason(self, instance: ManagedInstance) -> str | None:
        """Return why the instance is an orphan, or None when its job is still running.

        NOTE: an instance of a running job is left alone even when it is not the job's
        current instance, such as a launch that timed out and was retried under a new token.
        The job's own teardown does not know that instance either.
        """
        if not instance.job_id:
            return "the instance names no job"
        try:
            description = await self._client.get_workflow_handle(instance.job_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return "no job workflow with this id exists"
            raise
        if description.status == WorkflowExecutionStatus.RUNNING:
            return None
        status = description.status.name if description.status else "unknown"
        return f"job workflow is {status}"

    def all(self) -> list:
        """Return every activity method, for registering on a worker."""
        return [self.sweep_orphans]

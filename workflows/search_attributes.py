"""Search attributes of job workflows, for the Temporal Web UI and `temporal workflow list`.

The API sets `TenantId`, `GpuType` and `JobStatus` when it starts a job, and `JobWorkflow`
keeps `JobStatus`, `Provider` and `CostMicros` current at every status change. A namespace must
have them registered before a job starts; `worker.search_attributes.register_search_attributes`
does that, and `cac dev` and `cac ops init` call it.

Example: `temporal workflow list --query "JobStatus='RUNNING' AND TenantId='acme'"`.
"""

from temporalio.common import SearchAttributeKey

JOB_STATUS = SearchAttributeKey.for_keyword("JobStatus")
"""Job status, such as "RUNNING"; see `workflows.types.JobStatus`."""

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
"""Tenant that pays for the job."""

PROVIDER = SearchAttributeKey.for_keyword("Provider")
"""Provider of the job's current or last instance; unset before the first launch."""

GPU_TYPE = SearchAttributeKey.for_keyword("GpuType")
"""Requested GPU model; unset for a CPU-only job."""

COST_MICROS = SearchAttributeKey.for_int("CostMicros")
"""Cost accrued so far in micro-credits; after settlement, the captured amount."""

JOB_SEARCH_ATTRIBUTES = (JOB_STATUS, TENANT_ID, PROVIDER, GPU_TYPE, COST_MICROS)
"""Every search attribute that job workflows use."""

"""Runs the worker that executes the job and maintenance workflows and their activities."""

import asyncio
import logging

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

import ledger
from activities.jobs import JobActivities
from activities.maintenance import MaintenanceActivities
from activities.sweep import SweepActivities
from activities.webhooks import WebhookActivities
from config import Settings
from config.telemetry import configure_tracing
from providers.registry import build_providers
from worker.client import connect_temporal
from worker.log_context import TenantLogInterceptor
from worker.metrics import start_metrics_server, temporal_runtime
from worker.schedules import ensure_schedules
from worker.search_attributes import register_search_attributes
from workflows.job import JobWorkflow
from workflows.logs import LogsWorkflow
from workflows.maintenance import ExpireGrantsWorkflow, OrphanSweepWorkflow
from workflows.quotes import QuotesWorkflow

logger = logging.getLogger(__name__)


def build_worker(
    client: Client,
    settings: Settings,
    activities: JobActivities,
    maintenance: MaintenanceActivities | None = None,
    sweep: SweepActivities | None = None,
) -> Worker:
    """Build a worker for the job and quotes workflows, and for each upkeep workflow whose
    activities are given, on the configured task queue."""
    workflows: list[type] = [JobWorkflow, QuotesWorkflow, LogsWorkflow]
    webhooks = WebhookActivities(settings)
    activity_methods = [*activities.all(), webhooks.deliver_event, webhooks.deliver_low_balance]
    if maintenance is not None:
        workflows.append(ExpireGrantsWorkflow)
        activity_methods += maintenance.all()
    if sweep is not None:
        workflows.append(OrphanSweepWorkflow)
        activity_methods += sweep.all()
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=workflows,
        activities=activity_methods,
        interceptors=[TenantLogInterceptor()],
    )


def build_activities(
    client: Client, settings: Settings
) -> tuple[JobActivities, MaintenanceActivities, SweepActivities]:
    """Build the activities with the enabled providers and the ledger database."""
    engine = ledger.create_ledger_engine(settings.database_url)
    providers = build_providers(settings)
    jobs = JobActivities(
        providers=providers,
        ledger_engine=engine,
        poll_interval_seconds=settings.poll_interval_seconds,
        max_attempts=settings.max_attempts,
        max_preemptions=settings.max_preemptions,
        readiness_timeout_seconds=settings.readiness_timeout_seconds,
        history_event_limit=settings.history_event_limit,
    )
    return (
        jobs,
        MaintenanceActivities(ledger_engine=engine),
        SweepActivities(client=client, providers=providers),
    )


async def run_worker(settings: Settings) -> None:
    """Migrate the ledger, connect to Temporal, keep the schedules in place and run the worker
    until cancelled.

    With `CAC_OTEL_EXPORTER` set, workflows and activities are traced. The endpoint of the
    project's metrics (`CAC_METRICS_PORT`) starts only after the ledger is migrated and Temporal
    is connected, so a health check on it passes only for a worker that got that far.
    """
    configure_tracing(settings, "cac-worker")
    await asyncio.to_thread(ledger.upgrade, settings.database_url)
    client = await connect_temporal(settings, runtime=temporal_runtime(settings))
    try:
        await register_search_attributes(client, settings.temporal_namespace)
    except RPCError as error:
        # Registration needs operator rights, which a production worker may lack; `cac ops
        # init` registers them with an operator's credentials instead.
        logger.warning(
            "could not register the job search attributes in namespace %s: %s; run"
            " `cac ops init` with operator rights",
            settings.temporal_namespace,
            error,
        )
    await ensure_schedules(client, settings)
    jobs, maintenance, sweep = build_activities(client, settings)
    worker = build_worker(client, settings, jobs, maintenance, sweep)
    metrics_server = start_metrics_server(settings)
    logger.info(
        "worker polling task queue %s on %s with providers %s",
        settings.task_queue,
        settings.temporal_address,
        ",".join(settings.providers),
    )
    try:
        await worker.run()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()

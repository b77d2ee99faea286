"""Runs the worker that executes the job and maintenance workflows and their activities."""

import asyncio
import logging

from temporalio.client import Client
from temporalio.worker import Worker

import ledger
from activities.jobs import JobActivities
from activities.maintenance import MaintenanceActivities
from activities.sweep import SweepActivities
from config import Settings
from providers.registry import build_providers
from worker.client import connect_temporal
from worker.schedules import ensure_schedules
from workflows.job import JobWorkflow
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
    workflows: list[type] = [JobWorkflow, QuotesWorkflow]
    activity_methods = activities.all()
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
    )
    return (
        jobs,
        MaintenanceActivities(ledger_engine=engine),
        SweepActivities(client=client, providers=providers),
    )


async def run_worker(settings: Settings) -> None:
    """Migrate the ledger, connect to Temporal, keep the schedules in place and run the worker
    until cancelled."""
    await asyncio.to_thread(ledger.upgrade, settings.database_url)
    client = await connect_temporal(settings)
    await ensure_schedules(client, settings)
    jobs, maintenance, sweep = build_activities(client, settings)
    worker = build_worker(client, settings, jobs, maintenance, sweep)
    logger.info(
        "worker polling task queue %s on %s with providers %s",
        settings.task_queue,
        settings.temporal_address,
        ",".join(settings.providers),
    )
    await worker.run()

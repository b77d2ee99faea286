"""The FastAPI application: routes, and the Temporal client and ledger engine it shares."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from api.errors import install_problem_handlers
from api.limits import BodySizeLimit
from api.log_context import RequestLogContext
from api.metrics import RequestMetrics
from api.routes import (
    account,
    grants,
    health,
    io,
    job_list,
    jobs,
    logs,
    metrics,
    objects,
    quotes,
    refunds,
    variance,
    webhooks,
)
from config import Settings, get_settings
from config.telemetry import configure_tracing, instrument_api
from ledger.db import create_ledger_engine
from storage import build_object_store
from worker.client import connect_temporal

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None
) -> FastAPI:
    """Build the API application.

    The Temporal client and the ledger engine are created in the app's lifespan, so building
    the app does no I/O. Without the lifespan (as in tests that only exercise authentication
    and validation) routes that need either return 503.

    Args:
        settings: Configuration; the process-wide settings when None.
        temporal_client: An already connected client to use instead of connecting at startup.

    Raises:
        ValueError: a setting is unsafe outside dev mode (see `Settings.check_production_safety`).
    """
    settings = settings or get_settings()
    settings.check_production_safety()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.temporal_client is None:
            app.state.temporal_client = await connect_temporal(settings)
        engine = create_ledger_engine(settings.database_url)
        app.state.ledger_engine = engine
        logger.info(
            "API connected to Temporal at %s, namespace %s, task queue %s",
            settings.temporal_address,
            settings.temporal_namespace,
            settings.task_queue,
        )
        try:
            yield
        finally:
            app.state.ledger_engine = None
            engine.dispose()

    app = FastAPI(
        title="compute-as-credit",
        summary="Run GPU jobs across compute providers, billed in credits.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.temporal_client = temporal_client
    app.state.ledger_engine = None
    app.state.object_store = build_object_store(settings)

    app.add_middleware(BodySizeLimit)
    app.add_middleware(RequestLogContext)
    # Between the two, so that the catch-all 500 problem covers the size limit and the
    # metrics count the problem's status.
    install_problem_handlers(app)
    app.add_middleware(RequestMetrics)
    app.include_router(jobs.router)
    app.include_router(logs.router)
    app.include_router(job_list.router)
    app.include_router(io.router)
    app.include_router(objects.router)
    app.include_router(account.router)
    app.include_router(grants.router)
    app.include_router(refunds.router)
    app.include_router(quotes.router)
    app.include_router(variance.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    instrument_api(app, settings)
    return app


def serve(settings: Settings) -> None:
    """Run the API with uvicorn on `settings.api_host`:`settings.api_port` until stopped."""
    configure_tracing(settings, "cac-api")
    app = create_app(settings)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_config=None)

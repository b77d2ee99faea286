"""`/healthz` and `/readyz`: probes for a load balancer or an orchestrator; no authentication.

`/healthz` (liveness) returns 200 as long as the process serves requests. `/readyz` (readiness)
also checks that Temporal and the ledger database respond within `CHECK_TIMEOUT_SECONDS`, so
that traffic goes only to an instance that can serve it. Failure details go to the log, not
to the unauthenticated response.
"""

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import Engine, text
from temporalio.client import Client

router = APIRouter(tags=["operations"])

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
"""Seconds each readiness check may take before its dependency counts as down."""

# The ledger check blocks a thread, and a database that never responds can keep it blocked
# past the timeout. One dedicated thread bounds that to one stuck thread per process, and
# leaves the default executor to the ledger routes that share it.
_ledger_check_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz-ledger")


class Health(BaseModel):
    """Body of `GET /healthz`."""

    status: Literal["ok"] = "ok"


class CheckResult(BaseModel):
    """Outcome of one readiness check."""

    status: Literal["ok", "down"]
    reason: str | None = None
    """Reason that the dependency counts as down; None when it is up."""


class Readiness(BaseModel):
    """Body of `GET /readyz`."""

    status: Literal["ready", "unavailable"]
    down: list[str]
    """Names of the checks that failed, in the order of `checks`; empty when ready."""
    checks: dict[str, CheckResult]
    """Each check by name: `temporal` and `ledger`."""


@router.get("/healthz")
async def healthz() -> Health:
    """Report that the process is up; checks no dependency."""
    return Health()


@router.get(
    "/readyz",
    responses={
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": Readiness,
            "description": "Temporal or the ledger database is down; `down` names which.",
        }
    },
)
async def readyz(request: Request, response: Response) -> Readiness:
    """Check Temporal and the ledger database, concurrently; 503 when either is down."""
    temporal, ledger = await asyncio.gather(
        _check_temporal(request.app.state.temporal_client),
        _check_ledger(request.app.state.ledger_engine),
    )
    checks = {"temporal": temporal, "ledger": ledger}
    down = [name for name, result in checks.items() if result.status == "down"]
    if down:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="unavailable" if down else "ready", down=down, checks=checks)


async def _check_temporal(client: Client | None) -> CheckResult:
    if client is None:
        return CheckResult(status="down", reason="not connected")

    # The gRPC health service of the frontend. The outer timeout also covers a lazy client's
    # first connection attempt, which the RPC timeout does not.
    timeout = timedelta(seconds=CHECK_TIMEOUT_SECONDS)
    check = client.service_client.check_health(timeout=timeout)
    return await _run_check("temporal", check)


async def _check_ledger(engine: Engine | None) -> CheckResult:
    if engine is None:
        return CheckResult(status="down", reason="not connected")

    loop = asyncio.get_running_loop()
    check = loop.run_in_executor(_ledger_check_executor, _select_one, engine)
    return await _run_check("ledger", check)


def _select_one(engine: Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(text("SELECT 1")).scalar_one() == 1


async def _run_check(name: str, check) -> CheckResult:
    try:
        serving = await asyncio.wait_for(check, timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.warning("readiness check %s timed out after %s s", name, CHECK_TIMEOUT_SECONDS)
        return CheckResult(status="down", reason=f"timed out after {CHECK_TIMEOUT_SECONDS} s")
    # Any error means the dependency cannot serve requests; its kind is all the probe needs.
    except Exception as error:
        logger.warning("readiness check %s failed: %s", name, error)
        return CheckResult(status="down", reason=f"failed: {type(error).__name__}")
    if not serving:
        logger.warning("readiness check %s: the dependency reports that it is not serving", name)
        return CheckResult(status="down", reason="not serving")
    return CheckResult(status="ok")

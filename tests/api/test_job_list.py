"""`GET /v1/jobs` on a Temporal dev server, with a real worker and a PostgreSQL ledger.

The time-skipping test server cannot list workflows, so this module runs a dev server, and
jobs run in real time. The `fast` provider's T4 jobs succeed about a second after launch. The
`slow` provider's A100 jobs stay PROVISIONING for an hour. An H100 job fails at once, because
no provider offers one. Visibility is eventually consistent, so each test that
expects a change waits for it with `wait_for_list`, within a bounded time.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import ledger
from activities.jobs import JobActivities
from api.app import create_app
from config import Settings
from providers.fake import FakeProvider
from tests.api.conftest import SECRET, asgi_client, bearer
from tests.conftest import fresh_pg_database, start_dev_server_env
from tests.support.processes import TEMPORAL
from worker.main import build_worker

CREDIT = 1_000_000

# 3.6 credits per GPU-hour is 0.001 credits per second.
PRICE_PER_HOUR_MICROS = 3_600_000

VISIBILITY_TIMEOUT_SECONDS = 20.0
"""How long a test waits for the list to show what it expects."""


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server_env()
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def ledger_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        ledger.upgrade(url)
        yield url


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory, ledger_url) -> Settings:
    return Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path_factory.mktemp("job-list"),
        task_queue=f"job-list-{uuid.uuid4().hex}",
        DATABASE_URL=ledger_url,
    )


@pytest.fixture(scope="module")
def ledger_engine(module_settings):
    engine = ledger.create_ledger_engine(module_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
async def job_worker(dev_env, module_settings, ledger_engine) -> AsyncIterator[None]:
    fast = FakeProvider(
        "fast",
        price_per_hour_micros=PRICE_PER_HOUR_MICROS,
        gpu_types=["T4"],
        start_seconds=0,
        run_seconds=1,
    )
    slow = FakeProvider(
        "slow",
        price_per_hour_micros=PRICE_PER_HOUR_MICROS,
        gpu_types=["A100"],
        start_seconds=3600,
        run_seconds=60,
    )
    activities = JobActivities(
        providers={fast.name: fast, slow.name: slow},
        ledger_engine=ledger_engine,
        poll_interval_seconds=1,
    )
    async with build_worker(dev_env.client, module_settings, activities):
        yield


@pytest.fixture(scope="module")
async def client(dev_env, module_settings, job_worker) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(module_settings, temporal_client=dev_env.client)
    async with app.router.lifespan_context(app), asgi_client(app) as http:
        yield http


def new_tenant(engine) -> str:
    """Create a tenant with 100 credits, enough to hold the 5-credit budgets of all its jobs."""
    name = f"tenant-{uuid.uuid4().hex[:12]}"
    ledger.grant(engine, tenant_id=name, amount_micros=100 * CREDIT, key="test-grant")
    return name


def reader(tenant: str) -> dict[str, str]:
    return bearer(tenant, "jobs:read")


async def submit(http: httpx.AsyncClient, tenant: str, gpu_type: str) -> str:
    response = await http.post(
        "/v1/jobs",
        json={
            "agentSpec": {"image": "python:3.11-slim", "cmd": "python train.py"},
            "resourceHint": {"gpuType": gpu_type},
            "maxBudget": "5",
        },
        headers=bearer(tenant, "jobs:write"),
    )
    assert response.status_code == 201, response.text
    return response.json()["jobId"]


async def wait_for_list(
    http: httpx.AsyncClient,
    tenant: str,
    ready: Callable[[dict[str, Any]], bool],
    params: Any = None,
) -> dict[str, Any]:
    """List the tenant's jobs until `ready` accepts the body, and return that body.

    Raises:
        AssertionError: `ready` rejected every body for `VISIBILITY_TIMEOUT_SECONDS`; the
            message shows the last one.
    """
    deadline = time.monotonic() + VISIBILITY_TIMEOUT_SECONDS
    while True:
        response = await http.get("/v1/jobs", params=params, headers=reader(tenant))
        assert response.status_code == 200, response.text
        body = response.json()
        if ready(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"the list did not change as expected; it shows {body}")
        await asyncio.sleep(0.2)


def ids(body: dict[str, Any]) -> list[str]:
    return [job["jobId"] for job in body["jobs"]]


def statuses_are(expected: dict[str, str]) -> Callable[[dict[str, Any]], bool]:
    """Return a check that the list contains exactly the jobs of `expected`, in those statuses."""

    def check(body: dict[str, Any]) -> bool:
        return {job["jobId"]: job["status"] for job in body["jobs"]} == expected

    return check


@dataclass
class History:
    """Jobs of two tenants, each one's jobs in a final or lasting status."""

    tenant: str
    """Tenant with a succeeded T4 job, a failed H100 job and two provisioning A100 jobs."""

    succeeded: str
    failed: str
    provisioning: str
    newest: str
    """The second A100 job, submitted last."""

    other_tenant: str
    """Tenant with one succeeded T4 job."""

    other_job: str
    submitted_between: tuple[datetime, datetime]
    """Times just before and just after `provisioning` was submitted."""


@pytest.fixture(scope="module")
async def history(client, ledger_engine) -> History:
    tenant = new_tenant(ledger_engine)
    other_tenant = new_tenant(ledger_engine)

    succeeded = await submit(client, tenant, "T4")
    other_job = await submit(client, other_tenant, "T4")
    await wait_for_list(client, tenant, statuses_are({succeeded: "SUCCEEDED"}))
    await wait_for_list(client, other_tenant, statuses_are({other_job: "SUCCEEDED"}))

    before = datetime.now().astimezone()
    provisioning = await submit(client, tenant, "A100")
    after = datetime.now().astimezone()
    failed = await submit(client, tenant, "H100")
    await wait_for_list(
        client,
        tenant,
        statuses_are({succeeded: "SUCCEEDED", provisioning: "PROVISIONING", failed: "FAILED"}),
    )

    newest = await submit(client, tenant, "A100")
    await wait_for_list(
        client,
        tenant,
        statuses_are(
            {
                succeeded: "SUCCEEDED",
                provisioning: "PROVISIONING",
                failed: "FAILED",
                newest: "PROVISIONING",
            }
        ),
    )
    return History(
        tenant=tenant,
        succeeded=succeeded,
        failed=failed,
        provisioning=provisioning,
        newest=newest,
        other_tenant=other_tenant,
        other_job=other_job,
        submitted_between=(before, after),
    )


async def list_jobs(http: httpx.AsyncClient, tenant: str, params: Any = None) -> httpx.Response:
    return await http.get("/v1/jobs", params=params, headers=reader(tenant))


async def test_list_jobs_shows_only_callers_jobs(client, history):
    own = await list_jobs(client, history.tenant)
    other = await list_jobs(client, history.other_tenant)

    assert own.status_code == 200
    assert sorted(ids(own.json())) == sorted(
        [history.succeeded, history.failed, history.provisioning, history.newest]
    )
    assert own.json()["nextCursor"] is None
    assert other.status_code == 200
    assert ids(other.json()) == [history.other_job]


async def test_list_jobs_orders_running_then_recently_closed(client, history):
    response = await list_jobs(client, history.tenant)

    # Running jobs, newest submitted first; then ended jobs, most recently ended first.
    assert ids(response.json()) == [
        history.newest,
        history.provisioning,
        history.failed,
        history.succeeded,
    ]


async def test_list_jobs_items_carry_search_attributes(client, history):
    response = await list_jobs(client, history.tenant)
    jobs = {job["jobId"]: job for job in response.json()["jobs"]}

    succeeded = jobs[history.succeeded]
    assert succeeded["status"] == "SUCCEEDED"
    assert succeeded["provider"] == "fast"
    assert succeeded["gpuType"] == "T4"
    assert succeeded["cost"] == "0.001000"
    assert succeeded["closedAt"] is not None
    assert datetime.fromisoformat(succeeded["closedAt"]) > datetime.fromisoformat(
        succeeded["submittedAt"]
    )

    failed = jobs[history.failed]
    assert failed["status"] == "FAILED"
    assert failed["provider"] is None
    assert failed["gpuType"] == "H100"
    assert failed["cost"] == "0.000000"
    assert failed["closedAt"] is not None

    provisioning = jobs[history.provisioning]
    before, after = history.submitted_between
    assert provisioning["status"] == "PROVISIONING"
    assert provisioning["provider"] == "slow"
    assert provisioning["gpuType"] == "A100"
    assert provisioning["cost"] == "0.000000"
    assert provisioning["closedAt"] is None
    assert before <= datetime.fromisoformat(provisioning["submittedAt"]) <= after


async def test_list_jobs_filters_by_status(client, history):
    succeeded = await list_jobs(client, history.tenant, {"status": "SUCCEEDED"})
    comma_separated = await list_jobs(client, history.tenant, {"status": "SUCCEEDED,FAILED"})
    repeated = await list_jobs(
        client, history.tenant, [("status", "PROVISIONING"), ("status", "FAILED")]
    )
    running = await list_jobs(client, history.tenant, {"status": "RUNNING"})

    assert ids(succeeded.json()) == [history.succeeded]
    assert ids(comma_separated.json()) == [history.failed, history.succeeded]
    assert ids(repeated.json()) == [history.newest, history.provisioning, history.failed]
    assert ids(running.json()) == []


async def test_list_jobs_filters_by_gpu_type(client, history):
    a100 = await list_jobs(client, history.tenant, {"gpuType": "A100"})
    with_status = await list_jobs(client, history.tenant, {"gpuType": "T4", "status": "FAILED"})
    other_case = await list_jobs(client, history.tenant, {"gpuType": "a100"})

    assert ids(a100.json()) == [history.newest, history.provisioning]
    assert ids(with_status.json()) == []
    assert ids(other_case.json()) == []


async def test_list_jobs_filters_by_submission_time(client, history):
    jobs = {job["jobId"]: job for job in (await list_jobs(client, history.tenant)).json()["jobs"]}
    boundary = jobs[history.provisioning]["submittedAt"]

    at_or_after = await list_jobs(client, history.tenant, {"submittedAfter": boundary})
    before = await list_jobs(client, history.tenant, {"submittedBefore": boundary})
    window = await list_jobs(
        client,
        history.tenant,
        {"submittedAfter": boundary, "submittedBefore": jobs[history.newest]["submittedAt"]},
    )

    assert ids(at_or_after.json()) == [history.newest, history.provisioning, history.failed]
    assert ids(before.json()) == [history.succeeded]
    assert ids(window.json()) == [history.provisioning, history.failed]


async def test_list_jobs_pages_with_limit_one(client, history):
    pages = []
    cursor = None
    for _ in range(10):
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await list_jobs(client, history.tenant, params)
        assert response.status_code == 200, response.text
        pages.append(ids(response.json()))
        cursor = response.json()["nextCursor"]
        if cursor is None:
            break

    # Temporal returns a next page token with every full page, so the last page is empty.
    assert pages == [
        [history.newest],
        [history.provisioning],
        [history.failed],
        [history.succeeded],
        [],
    ]


async def test_list_jobs_pages_keep_status_filter(client, history):
    first = await list_jobs(client, history.tenant, {"status": "PROVISIONING", "limit": 1})
    second = await list_jobs(
        client,
        history.tenant,
        {"status": "PROVISIONING", "limit": 1, "cursor": first.json()["nextCursor"]},
    )

    assert ids(first.json()) == [history.newest]
    assert ids(second.json()) == [history.provisioning]


async def test_list_jobs_cursor_shows_no_other_tenants_jobs(client, history):
    first = await list_jobs(client, history.tenant, {"limit": 1})

    # A cursor is a position in the list, not a query. The other tenant's own query
    # continues from that position and lists only its own ended job.
    stolen = await list_jobs(
        client, history.other_tenant, {"limit": 10, "cursor": first.json()["nextCursor"]}
    )

    assert stolen.status_code == 200
    assert ids(stolen.json()) == [history.other_job]


@pytest.mark.parametrize(
    ("params", "field", "detail"),
    [
        (
            {"status": "DONE"},
            "status",
            (
                "'DONE' is not a job status; use SUBMITTED, QUEUED, PROVISIONING, RUNNING,"
                " SUCCEEDED, FAILED, CANCELLED"
            ),
        ),
        (
            {"status": "RUNNING,running"},
            "status",
            (
                "'running' is not a job status; use SUBMITTED, QUEUED, PROVISIONING, RUNNING,"
                " SUCCEEDED, FAILED, CANCELLED"
            ),
        ),
        ({"gpuType": ""}, "gpuType", "String should have at least 1 character"),
        ({"gpuType": "A100\n"}, "gpuType", "must not contain control characters"),
        (
            {"submittedAfter": "2026-01-01T00:00:00"},
            "submittedAfter",
            "'2026-01-01T00:00:00' has no timezone; add one, such as 2026-01-01T00:00:00Z",
        ),
        ({"submittedBefore": "yesterday"}, "submittedBefore", None),
        (
            {"submittedBefore": "0.0"},
            "submittedBefore",
            "'0.0' is not an ISO 8601 time, such as 2026-01-01T00:00:00Z",
        ),
        ({"submittedAfter": "0"}, "submittedAfter", None),
        (
            {"submittedAfter": "0001-01-01T00:00:00+05:00"},
            "submittedAfter",
            "'0001-01-01T00:00:00+05:00' is out of range in UTC",
        ),
        (
            {"submittedAfter": "2026-02-01T00:00:00Z", "submittedBefore": "2026-01-01T00:00:00Z"},
            "submittedBefore",
            "must be later than submittedAfter",
        ),
        ({"limit": 0}, "limit", "Input should be greater than or equal to 1"),
        ({"limit": 101}, "limit", "Input should be less than or equal to 100"),
        ({"cursor": "not a cursor"}, "cursor", None),
        ({"cursor": "a"}, "cursor", "is not a nextCursor that this API returned"),
        (
            # base64url of "garbage": well formed, but not a page token of Temporal's.
            {"cursor": "Z2FyYmFnZQ"},
            "cursor",
            "is invalid or expired; list again without a cursor, with the same filters",
        ),
    ],
)
async def test_list_jobs_rejects_invalid_parameter(client, history, params, field, detail):
    response = await list_jobs(client, history.tenant, params)

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(error["in"], error["field"]) for error in errors] == [("query", field)]
    if detail is not None:
        assert errors[0]["detail"] == detail


@pytest.mark.parametrize(
    "gpu_type",
    [
        "T4' OR TenantId = '{other}",
        "T4\\' OR TenantId = \\'{other}",
        "T4') OR (TenantId = '{other}",
        "T4' OR WorkflowType = 'JobWorkflow",
        'T4" OR TenantId = "{other}',
    ],
)
async def test_list_jobs_gpu_type_injection_matches_nothing(client, history, gpu_type):
    value = gpu_type.format(other=history.other_tenant)

    response = await list_jobs(client, history.tenant, {"gpuType": value})

    assert response.status_code == 200
    assert response.json() == {"jobs": [], "nextCursor": None}


async def test_list_jobs_gpu_type_with_quote_matches_exactly(client, ledger_engine):
    tenant = new_tenant(ledger_engine)
    quoted = await submit(client, tenant, "it's")
    await wait_for_list(client, tenant, statuses_are({quoted: "FAILED"}))

    exact = await list_jobs(client, tenant, {"gpuType": "it's"})
    widened = await list_jobs(client, tenant, {"gpuType": "it's' OR GpuType != 'x"})

    assert ids(exact.json()) == [quoted]
    assert exact.json()["jobs"][0]["gpuType"] == "it's"
    assert ids(widened.json()) == []


async def test_list_jobs_shows_terminated_job_as_failed(client, dev_env, ledger_engine):
    tenant = new_tenant(ledger_engine)
    job_id = await submit(client, tenant, "A100")
    await wait_for_list(client, tenant, statuses_are({job_id: "PROVISIONING"}))

    await dev_env.client.get_workflow_handle(job_id).terminate(reason="stopped by an operator")
    listed = await wait_for_list(client, tenant, statuses_are({job_id: "FAILED"}))
    provisioning = await list_jobs(client, tenant, {"status": "PROVISIONING"})
    failed = await list_jobs(client, tenant, {"status": "FAILED"})

    # The workflow recorded PROVISIONING last; the list reports the job as FAILED, by its
    # terminated workflow, and filters by that status too.
    assert listed["jobs"][0]["status"] == "FAILED"
    assert listed["jobs"][0]["closedAt"] is not None
    assert ids(provisioning.json()) == []
    assert ids(failed.json()) == [job_id]


async def test_list_jobs_of_new_tenant_is_empty(client):
    response = await list_jobs(client, f"tenant-{uuid.uuid4().hex[:12]}")

    assert response.status_code == 200
    assert response.json() == {"jobs": [], "nextCursor": None}


async def test_list_jobs_without_search_attributes_returns_503(module_settings):
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL, ip="127.0.0.1", ui=False
    )
    try:
        app = create_app(module_settings, temporal_client=env.client)
        async with app.router.lifespan_context(app), asgi_client(app) as http:
            response = await list_jobs(http, "tenant-a")
    finally:
        await env.shutdown()

    assert response.status_code == 503
    assert response.json()["type"] == "https://compute-as-credit.dev/problems/temporal-unavailable"
    assert response.json()["detail"] == (
        "the job search attributes are not registered in the Temporal namespace default;"
        " an operator must run `cac ops init`"
    )

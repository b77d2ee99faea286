"""`POST /v1/admin/jobs/{job_id}/refunds` on a PostgreSQL ledger.

Each test's job is held and captured through the ledger functions directly: 5 credits held,
3 captured, 2 released, so 3 credits are refundable.
"""

import uuid
from dataclasses import dataclass

import pytest

import ledger
from tests.api.conftest import bearer, new_tenant

ADMIN = bearer("operator", "billing:admin")


@dataclass(frozen=True)
class Job:
    tenant: str
    job_id: str

    @property
    def url(self) -> str:
        return f"/v1/admin/jobs/{self.job_id}/refunds"


def with_key(key: str) -> dict[str, str]:
    return {**ADMIN, "Idempotency-Key": key}


def new_key() -> str:
    return f"refund-{uuid.uuid4().hex}"


@pytest.fixture
def job(billing_engine) -> Job:
    """A settled job with 3 credits captured from a 10-credit tenant."""
    tenant = new_tenant()
    job_id = f"job-{uuid.uuid4().hex}"
    ledger.grant(billing_engine, tenant_id=tenant, amount_micros=10_000_000, key="seed")
    ledger.hold(
        billing_engine, tenant_id=tenant, job_id=job_id, amount_micros=5_000_000, key="hold"
    )
    ledger.capture(
        billing_engine, tenant_id=tenant, job_id=job_id, amount_micros=3_000_000, key="capture"
    )
    ledger.release(
        billing_engine, tenant_id=tenant, job_id=job_id, amount_micros=2_000_000, key="release"
    )
    return Job(tenant=tenant, job_id=job_id)


async def test_partial_refund_returns_transaction(billing_client, billing_engine, job):
    response = await billing_client.post(
        job.url, json={"amount": "1.25", "reason": "slow start"}, headers=with_key("r-1")
    )

    assert response.status_code == 201
    body = response.json()
    assert body == {
        "transactionId": body["transactionId"],
        "tenantId": job.tenant,
        "type": "refund",
        "jobId": job.job_id,
        "amount": "1.250000",
        "reason": "slow start",
        "expiresAt": None,
        "key": "r-1",
        "replayed": False,
    }
    balances = ledger.get_balances(billing_engine, job.tenant)
    assert balances.available_micros == 8_250_000
    assert balances.held_micros == 0
    assert balances.spent_micros == 1_750_000
    assert ledger.get_hold(billing_engine, job.job_id).refunded_micros == 1_250_000


async def test_refund_without_amount_refunds_the_rest(billing_client, billing_engine, job):
    await billing_client.post(
        job.url, json={"amount": "1", "reason": "partial"}, headers=with_key(new_key())
    )

    response = await billing_client.post(
        job.url, json={"reason": "the rest"}, headers=with_key(new_key())
    )

    assert response.status_code == 201
    assert response.json()["amount"] == "2.000000"
    assert ledger.get_hold(billing_engine, job.job_id).refunded_micros == 3_000_000
    assert ledger.get_balances(billing_engine, job.tenant).spent_micros == 0


async def test_refund_with_null_amount_refunds_the_rest(billing_client, job):
    response = await billing_client.post(
        job.url, json={"amount": None, "reason": "all"}, headers=with_key(new_key())
    )

    assert response.status_code == 201
    assert response.json()["amount"] == "3.000000"


async def test_full_refund_replay_when_nothing_left(billing_client, billing_engine, job):
    key = new_key()

    first = await billing_client.post(job.url, json={"reason": "all"}, headers=with_key(key))
    second = await billing_client.post(job.url, json={"reason": "all"}, headers=with_key(key))

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == {**first.json(), "replayed": True}
    assert ledger.get_hold(billing_engine, job.job_id).refunded_micros == 3_000_000


async def test_full_refund_replay_keeps_first_amount(billing_client, billing_engine):
    tenant = new_tenant()
    job_id = f"job-{uuid.uuid4().hex}"
    ledger.grant(billing_engine, tenant_id=tenant, amount_micros=10_000_000, key="seed")
    ledger.hold(billing_engine, tenant_id=tenant, job_id=job_id, amount_micros=5_000_000, key="h")
    ledger.capture(
        billing_engine, tenant_id=tenant, job_id=job_id, amount_micros=1_000_000, key="c1"
    )
    url = f"/v1/admin/jobs/{job_id}/refunds"
    key = new_key()

    first = await billing_client.post(url, json={"reason": "all"}, headers=with_key(key))
    ledger.capture(
        billing_engine, tenant_id=tenant, job_id=job_id, amount_micros=2_000_000, key="c2"
    )
    second = await billing_client.post(url, json={"reason": "all"}, headers=with_key(key))

    assert first.json()["amount"] == "1.000000"
    assert second.status_code == 200
    assert second.json() == {**first.json(), "replayed": True}
    assert ledger.get_hold(billing_engine, job_id).refunded_micros == 1_000_000


async def test_refund_replay_returns_200(billing_client, job):
    key = new_key()
    body = {"amount": "0.5", "reason": "retry"}

    first = await billing_client.post(job.url, json=body, headers=with_key(key))
    second = await billing_client.post(job.url, json=body, headers=with_key(key))

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["transactionId"] == first.json()["transactionId"]
    assert second.json()["replayed"] is True


async def test_refund_without_amount_replays_partial(billing_client, job):
    # An omitted amount means "what the key refunded", once the key is posted.
    key = new_key()

    first = await billing_client.post(
        job.url, json={"amount": "0.5", "reason": "r"}, headers=with_key(key)
    )
    second = await billing_client.post(job.url, json={"reason": "r"}, headers=with_key(key))

    assert second.status_code == 200
    assert second.json() == {**first.json(), "replayed": True}


async def test_refund_above_refundable_returns_422(billing_client, billing_engine, job):
    response = await billing_client.post(
        job.url, json={"amount": "3.000001", "reason": "too much"}, headers=with_key(new_key())
    )

    assert response.status_code == 422
    assert response.json() == {
        "type": "https://compute-as-credit.dev/problems/validation-error",
        "title": "Invalid request",
        "status": 422,
        "detail": f"amount: exceeds what job {job.job_id} has left to refund: 3.000000 credits",
        "instance": f"/v1/admin/jobs/{job.job_id}/refunds",
        "errors": [
            {
                "in": "body",
                "field": "amount",
                "detail": f"exceeds what job {job.job_id} has left to refund: 3.000000 credits",
                "type": "value_error",
            }
        ],
    }
    assert ledger.get_hold(billing_engine, job.job_id).refunded_micros == 0


async def test_refund_after_full_refund_returns_422(billing_client, job):
    await billing_client.post(job.url, json={"reason": "all"}, headers=with_key(new_key()))

    without_amount = await billing_client.post(
        job.url, json={"reason": "again"}, headers=with_key(new_key())
    )
    with_amount = await billing_client.post(
        job.url, json={"amount": "1", "reason": "again"}, headers=with_key(new_key())
    )

    assert without_amount.status_code == 422
    assert without_amount.json()["errors"] == [
        {
            "in": "body",
            "field": "amount",
            "detail": f"job {job.job_id} has nothing left to refund (0.000000 credits)",
            "type": "value_error",
        }
    ]
    assert with_amount.status_code == 422
    assert with_amount.json()["errors"][0]["detail"] == (
        f"exceeds what job {job.job_id} has left to refund: 0.000000 credits"
    )


async def test_refund_of_unknown_job_returns_404(billing_client):
    response = await billing_client.post(
        "/v1/admin/jobs/job-unknown/refunds", json={"reason": "x"}, headers=with_key(new_key())
    )

    assert response.status_code == 404
    assert response.json() == {
        "type": "https://compute-as-credit.dev/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "job job-unknown has no hold in the ledger",
        "instance": "/v1/admin/jobs/job-unknown/refunds",
    }


@pytest.mark.parametrize(
    ("changed", "location", "message"),
    [
        (
            {"amount": "2"},
            ["body", "amount"],
            (
                "Idempotency-Key 'same-key' was already used with amount 1.000000; send the"
                " same amount to retry, or use a new key"
            ),
        ),
        (
            {"reason": "other"},
            ["body", "reason"],
            (
                "Idempotency-Key 'same-key' was already used with reason 'late'; send the"
                " same reason to retry, or use a new key"
            ),
        ),
    ],
)
async def test_refund_key_reused_with_other_body_returns_422(
    billing_client, billing_engine, job, changed, location, message
):
    body = {"amount": "1", "reason": "late"}
    await billing_client.post(job.url, json=body, headers=with_key("same-key"))

    response = await billing_client.post(
        job.url, json={**body, **changed}, headers=with_key("same-key")
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"in": location[0], "field": location[1], "detail": message, "type": "value_error"}
    ]
    assert ledger.get_hold(billing_engine, job.job_id).refunded_micros == 1_000_000


async def test_full_refund_key_reused_returns_422(billing_client, job):
    await billing_client.post(
        job.url, json={"amount": "1", "reason": "late"}, headers=with_key("same-key")
    )

    response = await billing_client.post(
        job.url, json={"reason": "other"}, headers=with_key("same-key")
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["in"] == "body"
    assert response.json()["errors"][0]["field"] == "reason"


async def test_refund_with_capture_key_returns_422(billing_client, job):
    response = await billing_client.post(job.url, json={"reason": "x"}, headers=with_key("capture"))

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "in": "header",
            "field": "Idempotency-Key",
            "detail": "Idempotency-Key 'capture' was already used for a transaction with kind"
            " 'capture'; use a new key",
            "type": "value_error",
        }
    ]


async def test_refund_without_key_returns_422(billing_client, job):
    response = await billing_client.post(job.url, json={"reason": "x"}, headers=ADMIN)

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["in"], error["field"]) == ("header", "Idempotency-Key")
    assert error["type"] == "missing"


async def test_refund_shows_on_tenant_statement(billing_client, job):
    refunded = await billing_client.post(
        job.url, json={"amount": "0.75", "reason": "late start"}, headers=with_key(new_key())
    )

    statement = await billing_client.get(
        "/v1/account/transactions", params={"limit": 1}, headers=bearer(job.tenant, "billing:read")
    )

    (entry,) = statement.json()["entries"]
    assert entry["transactionId"] == refunded.json()["transactionId"]
    assert entry["type"] == "refund"
    assert entry["jobId"] == job.job_id
    assert entry["amount"] == "0.750000"
    assert entry["reason"] == "late start"
    assert entry["balanceAfter"] == "7.750000"

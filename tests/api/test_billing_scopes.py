"""Which scopes each billing route admits: its own only, and no token is a 401."""

import uuid

import pytest

from tests.api.conftest import bearer, new_tenant

ALL_SCOPES = ["jobs:read", "jobs:write", "billing:read", "billing:admin"]


def grant_request() -> tuple[str, str, dict]:
    return "POST", f"/v1/admin/tenants/{new_tenant()}/grants", {"amount": "1", "reason": "test"}


def refund_request() -> tuple[str, str, dict]:
    return "POST", f"/v1/admin/jobs/job-{uuid.uuid4().hex}/refunds", {"reason": "test"}


# Each route, the one scope it admits, a request factory, and the status that a request with
# that scope gets (the refunded job has no hold, so 404).
ROUTES = [
    ("account", "billing:read", lambda: ("GET", "/v1/account", None), 200),
    ("statement", "billing:read", lambda: ("GET", "/v1/account/transactions", None), 200),
    ("grant", "billing:admin", grant_request, 201),
    ("refund", "billing:admin", refund_request, 404),
]

MATRIX = [
    pytest.param(factory, own, scope, status, id=f"{name}-{scope}")
    for name, own, factory, status in ROUTES
    for scope in ALL_SCOPES
]


async def send(client, factory, headers: dict[str, str]):
    method, url, body = factory()
    headers = {**headers, "Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    return await client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize(("factory", "own_scope", "scope", "status"), MATRIX)
async def test_billing_route_admits_only_its_scope(
    billing_client, factory, own_scope, scope, status
):
    response = await send(billing_client, factory, bearer(new_tenant(), scope))

    if scope == own_scope:
        assert response.status_code == status, response.text
    else:
        assert response.status_code == 403
        problem = response.json()
        assert problem["type"] == "https://compute-as-credit.dev/problems/insufficient-scope"
        assert problem["detail"] == f"the token lacks the required scope {own_scope}"
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer error="insufficient_scope", scope="{own_scope}"'
        )


@pytest.mark.parametrize("route", ROUTES, ids=[route[0] for route in ROUTES])
async def test_billing_route_without_token_returns_401(billing_client, route):
    _, _, factory, _ = route

    response = await send(billing_client, factory, {})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("route", ROUTES, ids=[route[0] for route in ROUTES])
async def test_billing_route_with_every_other_scope_returns_403(billing_client, route):
    _, own_scope, factory, _ = route
    others = [scope for scope in ALL_SCOPES if scope != own_scope]

    response = await send(billing_client, factory, bearer(new_tenant(), *others))

    assert response.status_code == 403

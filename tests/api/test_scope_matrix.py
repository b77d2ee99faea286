"""Every route of the app checks a scope, except an explicit list of public routes.

The routes come from `app.routes` and each one's scope from its own dependencies, so a route
added later is checked here without a change to this file. The app is not started, so a
request that passes authentication ends at a 503 for its missing Temporal client or ledger,
or at the route's own validation. Either way it is not a 401 or 403, which is what counts.
"""

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from api.app import create_app
from api.auth import BILLING_ADMIN, BILLING_READ, JOBS_READ, JOBS_WRITE
from api.deps import iter_api_routes, required_scopes
from config import Settings
from tests.api.conftest import SECRET, asgi_client, bearer

KNOWN_SCOPES = frozenset({JOBS_READ, JOBS_WRITE, BILLING_READ, BILLING_ADMIN})
PROBLEMS = "https://compute-as-credit.dev/problems/"
README = Path(__file__).parents[2] / "README.md"

PUBLIC_ROUTES = {
    # The OpenAPI schema and its documentation pages.
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    # Probes of a load balancer or orchestrator, and the Prometheus scrape target.
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    # Objects behind signed URLs: the URL's signature is the authorization.
    ("GET", "/v1/objects/{key}"),
    ("PUT", "/v1/objects/{key}"),
}


def build_app(data_dir: Path):
    return create_app(Settings(jwt_secret=SECRET, data_dir=data_dir))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return build_app(tmp_path_factory.mktemp("scope-matrix"))


def all_routes() -> list[tuple[str, str, list[frozenset[str]]]]:
    """Return (method, path, scope checks) of every route of the app, public ones included."""
    # Building the app does no I/O, so the data directory need not exist.
    app = build_app(Path("/nonexistent/cac"))
    routes = []
    for route in iter_api_routes(app.routes):
        for method in sorted(route.methods):
            routes.append((method, route.path_format, required_scopes(route)))
    for route in app.routes:
        if isinstance(route, Route) and not isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD"}):
                routes.append((method, route.path_format, []))
    return routes


ROUTES = all_routes()
SCOPED_ROUTES = [(method, path, checks) for method, path, checks in ROUTES if checks]


def concrete(path: str) -> str:
    """Fill each path parameter with a value that the route's own validation accepts."""
    return re.sub(r"\{[^}]+\}", "x-1", path)


def route_id(route: tuple) -> str:
    return f"{route[0]} {route[1]}"


def test_every_route_checks_a_scope_or_is_public():
    unprotected = {(method, path) for method, path, checks in ROUTES if not checks}

    assert unprotected - PUBLIC_ROUTES == set()


def test_public_route_list_names_only_existing_routes():
    existing = {(method, path) for method, path, _ in ROUTES}

    assert PUBLIC_ROUTES - existing == set()


def test_every_scope_check_names_known_scopes():
    for method, path, checks in SCOPED_ROUTES:
        for accepted in checks:
            assert accepted <= KNOWN_SCOPES, f"{method} {path} checks {sorted(accepted)}"


def test_matrix_covers_every_route_that_was_there_first():
    scoped = {(method, path) for method, path, _ in SCOPED_ROUTES}

    assert {
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/{job_id}"),
        ("GET", "/v1/quotes"),
        ("GET", "/v1/account"),
        ("GET", "/v1/account/transactions"),
        ("POST", "/v1/admin/tenants/{tenant}/grants"),
        ("POST", "/v1/admin/jobs/{job_id}/refunds"),
    } <= scoped


@pytest.mark.parametrize("route", SCOPED_ROUTES, ids=route_id)
async def test_scoped_route_without_token_returns_401(app, route):
    method, path, _ = route

    async with asgi_client(app) as client:
        response = await client.request(method, concrete(path))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["type"] == f"{PROBLEMS}missing-token"


@pytest.mark.parametrize("route", SCOPED_ROUTES, ids=route_id)
async def test_scoped_route_without_its_scope_returns_403(app, route):
    method, path, checks = route
    for accepted in checks:
        other_scopes = sorted(KNOWN_SCOPES - accepted)

        async with asgi_client(app) as client:
            response = await client.request(
                method, concrete(path), headers=bearer("tenant-a", *other_scopes)
            )

        assert response.status_code == 403, f"without {sorted(accepted)}: {response.text}"
        assert response.json()["type"] == f"{PROBLEMS}insufficient-scope"
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("route", SCOPED_ROUTES, ids=route_id)
async def test_scoped_route_with_its_scope_passes_authorization(app, route):
    method, path, checks = route
    # One scope from each check, and no other.
    granted = sorted({min(accepted) for accepted in checks})

    async with asgi_client(app) as client:
        response = await client.request(
            method, concrete(path), headers=bearer("tenant-a", *granted)
        )

    assert response.status_code not in (401, 403), response.text
    assert response.status_code != 500, response.text


@pytest.mark.parametrize(
    "route", sorted(PUBLIC_ROUTES & {(m, p) for m, p, _ in ROUTES}), ids=route_id
)
async def test_public_route_needs_no_token(app, route):
    method, path = route

    async with asgi_client(app) as client:
        response = await client.request(method, concrete(path))

    assert response.status_code != 401, response.text


def test_readme_scope_table_lists_every_scoped_route():
    section = README.read_text().split("## Scopes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+) ([^`]+)` \| `([\w:]+)` \|", section, re.MULTILINE))

    expected = {
        (method, path, scope)
        for method, path, checks in SCOPED_ROUTES
        for accepted in checks
        for scope in accepted
    }
    assert expected - documented == set(), "add these routes to the scope table in README.md"
    assert documented - expected == set(), "remove these rows from the scope table in README.md"

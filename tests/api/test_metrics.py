"""`GET /metrics` and the request metrics that the API records.

The metrics live in the process-wide default registry, which other tests also add to, so each
test compares a series before and after its own requests.
"""

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import bearer


def requests_total(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("cac_http_requests_total", labels) or 0.0


def duration_count(method: str, route: str) -> float:
    labels = {"method": method, "route": route}
    return REGISTRY.get_sample_value("cac_http_request_duration_seconds_count", labels) or 0.0


async def test_request_counted_by_route_template_and_status(api_client):
    route = "/v1/jobs/{job_id}"
    before = requests_total("GET", route, "401")
    timed_before = duration_count("GET", route)

    first = await api_client.get("/v1/jobs/job-1")
    second = await api_client.get("/v1/jobs/job-2")

    assert first.status_code == 401
    assert second.status_code == 401
    assert requests_total("GET", route, "401") == before + 2
    assert duration_count("GET", route) == timed_before + 2
    raw_path = {"method": "GET", "route": "/v1/jobs/job-1", "status": "401"}
    assert REGISTRY.get_sample_value("cac_http_requests_total", raw_path) is None


async def test_request_counted_with_status_of_route_response(api_client):
    route = "/v1/jobs/{job_id}"
    before = requests_total("GET", route, "403")

    response = await api_client.get("/v1/jobs/job-1", headers=bearer("tenant-a", "billing:read"))

    assert response.status_code == 403
    assert requests_total("GET", route, "403") == before + 1


async def test_unknown_path_counted_as_unmatched(api_client):
    before = requests_total("GET", "<unmatched>", "404")

    response = await api_client.get("/no/such/path")

    assert response.status_code == 404
    assert requests_total("GET", "<unmatched>", "404") == before + 1


async def test_metrics_returns_prometheus_text_without_token(api_client):
    await api_client.get("/healthz")

    response = await api_client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert families["cac_http_requests"].type == "counter"
    assert families["cac_http_request_duration_seconds"].type == "histogram"
    healthz = [
        sample
        for sample in families["cac_http_requests"].samples
        if sample.name == "cac_http_requests_total" and sample.labels["route"] == "/healthz"
    ]
    assert [sample.labels for sample in healthz] == [
        {"method": "GET", "route": "/healthz", "status": "200"}
    ]
    assert healthz[0].value >= 1

"""The API's JSON log lines carry the authenticated tenant, and only inside its request."""

import json
import logging

from config.logging import JsonFormatter
from tests.api.conftest import bearer, new_tenant


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


async def test_route_log_line_carries_tenant(billing_client):
    tenant = new_tenant()
    capture = Capture()
    logger = logging.getLogger("api.routes.account")
    logger.addHandler(capture)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        response = await billing_client.put(
            "/v1/account/alerts/low-balance",
            json={"threshold": "5", "callbackUrl": "https://example.com/hook"},
            headers=bearer(tenant, "billing:read"),
        )
        logger.info("outside any request")
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous_level)

    assert response.status_code == 200
    inside, outside = capture.lines
    assert inside["tenant_id"] == tenant
    assert inside["message"].startswith(f"tenant {tenant} set a low-balance alert")
    assert "tenant_id" not in outside

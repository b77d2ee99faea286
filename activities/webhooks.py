"""Delivery of a job's events to its `callbackUrl`, signed as `sdk.webhooks` describes.

The workflow delivers one event at a time, in timeline order, and Temporal retries a failed
delivery with backoff. An event therefore survives worker crashes and receiver outages, and
the receiver gets the events in order. A retry sends the same `Webhook-Id`.
"""

import json
import logging
import time
from dataclasses import dataclass

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from ledger.alerts import LowBalanceNotice
from ledger.money import micros_to_credits
from sdk.webhooks import sign
from workflows.types import JobEvent

logger = logging.getLogger(__name__)

DELIVERY_TIMEOUT_SECONDS = 10.0

WEBHOOK_REJECTED = "WebhookRejected"
"""ApplicationError type of a delivery that the receiver rejected for good (4xx)."""


@dataclass
class WebhookDelivery:
    """Input of `deliver_event`."""

    url: str
    tenant_id: str
    job_id: str
    event: JobEvent


@dataclass
class LowBalanceDelivery:
    """Input of `deliver_low_balance`."""

    notice: LowBalanceNotice
    job_id: str
    """Job whose hold took the balance below the threshold."""


@dataclass
class WebhookResult:
    """Output of `deliver_event`."""

    status_code: int


class WebhookActivities:
    """Webhook deliveries, signed with secrets derived from the worker's settings."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        self._settings = settings
        self._http = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS, transport=transport)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    @activity.defn
    async def deliver_event(self, input: WebhookDelivery) -> WebhookResult:
        """POST one event to the callback URL; raise so that Temporal retries on failure.

        A 2xx response is a delivery. A 408, 429 or 5xx response, or no response, is retried.
        Another 4xx response is final: the receiver rejected the event.
        """
        payload = {"jobId": input.job_id, "tenantId": input.tenant_id, **input.event.to_json()}
        return await self._post(
            input.url,
            tenant_id=input.tenant_id,
            delivery_id=f"{input.job_id}/{input.event.sequence}",
            payload=payload,
            what=f"event {input.event.sequence} of job {input.job_id}",
        )

    @activity.defn
    async def deliver_low_balance(self, input: LowBalanceDelivery) -> WebhookResult:
        """POST a low-balance notice to the tenant's alert URL, retried like `deliver_event`."""
        notice = input.notice
        payload = {
            "type": "low_balance",
            "tenantId": notice.tenant_id,
            "jobId": input.job_id,
            "threshold": f"{micros_to_credits(notice.threshold_micros):f}",
            "available": f"{micros_to_credits(notice.available_micros):f}",
        }
        return await self._post(
            notice.callback_url,
            tenant_id=notice.tenant_id,
            delivery_id=f"low-balance/{input.job_id}",
            payload=payload,
            what=f"the low-balance notice of tenant {notice.tenant_id}",
        )

    async def _post(
        self, url: str, *, tenant_id: str, delivery_id: str, payload: dict, what: str
    ) -> WebhookResult:
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        secret = self._settings.tenant_webhook_secret(tenant_id)
        headers = {
            "Content-Type": "application/json",
            "Webhook-Id": delivery_id,
            "Webhook-Timestamp": str(timestamp),
            "Webhook-Signature": sign(secret, timestamp, body),
        }

        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise ApplicationError(f"delivery of {what} to {url} failed: {error!r}") from error

        code = response.status_code
        if 200 <= code < 300:
            return WebhookResult(status_code=code)
        message = f"{url} responded {code} to {what}"
        if code in (408, 429) or code >= 500:
            raise ApplicationError(message)
        raise ApplicationError(message, type=WEBHOOK_REJECTED, non_retryable=True)


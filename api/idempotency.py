"""Job ids and request fingerprints that make `POST /v1/jobs` safe to retry.

A request with an `Idempotency-Key` header gets a job id derived from the tenant and the key,
so a retry addresses the same workflow, and Temporal rejects a second workflow with that id.
The workflow's memo stores a hash of the first request, so that a retry with the same key but
different contents is rejected instead of silently returning the first job.
"""

import hashlib
import json
import uuid
from typing import Any

from api.models import SubmitJobRequest
from ledger.money import credits_to_micros

IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
"""1 to 255 printable ASCII characters."""


def derive_job_id(tenant_id: str, idempotency_key: str | None) -> str:
    """Return the job id for a submission: derived from the key when there is one, else random."""
    if idempotency_key is None:
        return f"job-{uuid.uuid4().hex}"
    # A header value cannot contain a newline, so no two (tenant, key) pairs give one name.
    name = f"{tenant_id}\n{idempotency_key}"
    return f"job-{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def normalized_request(request: SubmitJobRequest) -> dict[str, Any]:
    """Return the fields that define a job, with defaults applied."""
    hint = request.resource_hint
    normalized: dict[str, Any] = {
        "image": request.agent_spec.image,
        "cmd": request.agent_spec.cmd,
        "env": request.agent_spec.env,
        "gpuType": hint.gpu_type,
        "gpuCount": hint.gpu_count,
        "spotOk": hint.spot_ok,
        "maxBudgetMicros": credits_to_micros(request.max_budget),
        "callbackUrl": request.callback_url,
        "waitForInput": request.wait_for_input,
    }
    # Placement rules enter only when they differ from the defaults, so that the fingerprint
    # of a request that leaves them out stays what it was before they counted.
    if hint.policy != "balanced":
        normalized["policy"] = hint.policy
    if hint.providers:
        normalized["providers"] = sorted(hint.providers)
    if hint.max_price_per_hour is not None:
        normalized["maxPricePerHourMicros"] = credits_to_micros(hint.max_price_per_hour)
    return normalized


def request_hash(request: SubmitJobRequest) -> str:
    """Return the SHA-256 hex digest of the canonical JSON of the normalized request.

    Two requests that differ only in spelling (a command string versus its list, `"12.50"`
    versus `12.5`, key order, `userId`) have the same hash.
    """
    canonical = json.dumps(
        normalized_request(request), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()

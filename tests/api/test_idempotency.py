"""Job ids derived from Idempotency-Key headers, and request fingerprints."""

from api.idempotency import derive_job_id, request_hash
from api.models import SubmitJobRequest


def make_request(**overrides) -> SubmitJobRequest:
    request = {
        "agentSpec": {"image": "alpine", "cmd": ["echo", "hi there"], "env": {"A": "1", "B": "2"}},
        "resourceHint": {"gpuType": "A100"},
        "maxBudget": "12.5",
    }
    request.update(overrides)
    return SubmitJobRequest.model_validate(request)


def test_derive_job_id_stable():
    assert derive_job_id("tenant-a", "key-1") == derive_job_id("tenant-a", "key-1")
    assert derive_job_id("tenant-a", "key-1") == "job-7027cb47-80b0-5a98-ade9-7e450676506d"


def test_derive_job_id_differs_between_tenants():
    assert derive_job_id("tenant-a", "key-1") != derive_job_id("tenant-b", "key-1")


def test_derive_job_id_without_key_is_random():
    first = derive_job_id("tenant-a", None)
    second = derive_job_id("tenant-a", None)

    assert first != second
    assert first.startswith("job-")
    assert len(first) == len("job-") + 32


def test_request_hash_ignores_spelling_of_same_job():
    plain = make_request()
    respelled = make_request(
        agentSpec='{"env": {"B": "2", "A": "1"}, "cmd": "echo \'hi there\'", "image": "alpine"}',
        resourceHint={"gpuType": "A100", "gpuCount": 1, "spotOk": False},
        maxBudget="12.500000",
        userId="tenant-a",
    )

    assert request_hash(respelled) == request_hash(plain)


def test_request_hash_changes_with_budget():
    assert request_hash(make_request(maxBudget="12.500001")) != request_hash(make_request())


def test_request_hash_changes_with_command():
    changed = make_request(agentSpec={"image": "alpine", "cmd": ["echo", "hi", "there"]})

    assert request_hash(changed) != request_hash(make_request())

"""`PUT` and `GET /v1/objects/{key}`: the local store through the API, with signed URLs."""

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

import api.routes.objects
from api.app import create_app
from api.limits import MAX_BODY_BYTES
from config import Settings
from storage import LocalDirectoryStore
from tests.api.conftest import SECRET, UnusedTemporalClient, asgi_client

KEY = "jobs/job-objects/input"
RENEW_HINT = "; request a new URL with POST /v1/jobs/{job_id}/io"


@pytest.fixture
def app(settings):
    return create_app(settings, temporal_client=UnusedTemporalClient())


@pytest.fixture
def store(app) -> LocalDirectoryStore:
    return app.state.object_store


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as http:
        yield http


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


def _files_under(store: LocalDirectoryStore) -> list[str]:
    if not store.root.exists():
        return []
    return sorted(path.relative_to(store.root).as_posix() for path in store.root.rglob("*"))


async def test_upload_then_download_object_round_trips(client, store):
    # Larger than the JSON body limit, which does not apply to objects.
    payload = bytes(range(256)) * (MAX_BODY_BYTES // 256 + 1024)
    upload = store.presign_upload(KEY, expires_in_seconds=60)
    download = store.presign_download(KEY, expires_in_seconds=60)

    stored = await client.put(upload.url, content=payload)
    fetched = await client.get(download.url)

    assert stored.status_code == 200
    assert stored.content == b""
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "application/octet-stream"
    assert fetched.content == payload
    assert store.path(KEY).read_bytes() == payload
    assert _files_under(store) == ["jobs", "jobs/job-objects", KEY]


async def test_upload_object_replaces_earlier_one(client, store):
    upload = store.presign_upload(KEY, expires_in_seconds=60)

    first = await client.put(upload.url, content=b"first")
    second = await client.put(upload.url, content=b"second")

    assert first.status_code == 200
    assert second.status_code == 200
    assert store.path(KEY).read_bytes() == b"second"


async def test_upload_object_streamed_without_length(client, store):
    async def chunks():
        for index in range(4):
            yield f"chunk {index};".encode()

    upload = store.presign_upload(KEY, expires_in_seconds=60)

    response = await client.put(upload.url, content=chunks())

    assert response.status_code == 200
    assert store.path(KEY).read_bytes() == b"chunk 0;chunk 1;chunk 2;chunk 3;"


async def test_expired_url_returns_403(client, store):
    issued_at = time.time() - 3600
    upload = store.presign_upload(KEY, expires_in_seconds=60, now=issued_at)
    expired_at = datetime.fromtimestamp(int(issued_at) + 60, UTC).isoformat()

    response = await client.put(upload.url, content=b"late")

    assert response.status_code == 403
    assert response.json()["detail"] == f"the object URL expired at {expired_at}{RENEW_HINT}"
    assert not store.path(KEY).exists()


async def test_changed_signature_returns_403(client, store):
    download = store.presign_download(KEY, expires_in_seconds=60)
    signature = parse_qs(urlsplit(download.url).query)["signature"][0]
    changed = ("0" if signature[0] != "0" else "1") + signature[1:]

    response = await client.get(_with_query(download.url, signature=changed))

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "the object URL's signature does not match GET of this key and expiry"
        + RENEW_HINT
    )


async def test_extended_expiry_returns_403(client, store):
    upload = store.presign_upload(KEY, expires_in_seconds=60)
    expires = parse_qs(urlsplit(upload.url).query)["expires"][0]

    response = await client.put(
        _with_query(upload.url, expires=str(int(expires) + 86_400)), content=b"x"
    )

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "the object URL's signature does not match PUT of this key and expiry"
        + RENEW_HINT
    )
    assert not store.path(KEY).exists()


async def test_download_url_cannot_upload(client, store):
    download = store.presign_download(KEY, expires_in_seconds=60)

    response = await client.put(download.url, content=b"overwrite")

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "the object URL's signature does not match PUT of this key and expiry"
        + RENEW_HINT
    )
    assert not store.path(KEY).exists()


async def test_url_for_other_key_returns_403(client, store):
    download = store.presign_download("jobs/job-a/output.tar.gz", expires_in_seconds=60)
    query = urlsplit(download.url).query

    response = await client.get(f"/v1/objects/jobs/job-b/output.tar.gz?{query}")

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "the object URL's signature does not match GET of this key and expiry" + RENEW_HINT
    )


async def test_unsigned_request_returns_403(client):
    response = await client.get(f"/v1/objects/{KEY}")

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "the object URL is not signed: the expires and signature query parameters"
        " are required" + RENEW_HINT
    )


async def test_download_missing_object_returns_404(client, store):
    download = store.presign_download("jobs/job-none/output.tar.gz", expires_in_seconds=60)

    response = await client.get(download.url)

    assert response.status_code == 404
    assert response.json()["detail"] == "object jobs/job-none/output.tar.gz not found"


@pytest.mark.parametrize(
    "path", ["/v1/objects/jobs/%2E%2E/%2E%2E/secret", "/v1/objects/jobs/.hidden/input"]
)
async def test_unsafe_key_returns_422(client, store, path):
    response = await client.put(f"{path}?expires=9999999999&signature=00", content=b"x")

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(error["in"], error["field"]) for error in errors] == [("path", "key")]
    assert _files_under(store) == []


@pytest.fixture
def small_object_limit(monkeypatch) -> Iterator[int]:
    monkeypatch.setattr(api.routes.objects, "MAX_OBJECT_BYTES", 1000)
    yield 1000


async def test_upload_over_declared_limit_returns_413(client, store, small_object_limit):
    upload = store.presign_upload(KEY, expires_in_seconds=60)

    response = await client.put(upload.url, content=b"x" * (small_object_limit + 1))

    assert response.status_code == 413
    assert response.json()["detail"] == (
        "the object is larger than 1000 bytes"
    )
    assert _files_under(store) == []


async def test_upload_over_streamed_limit_returns_413(client, store, small_object_limit):
    async def chunks():
        for _ in range(3):
            yield b"y" * 400

    upload = store.presign_upload(KEY, expires_in_seconds=60)

    response = await client.put(upload.url, content=chunks())

    assert response.status_code == 413
    assert response.json()["detail"] == (
        "the object is larger than 1000 bytes"
    )
    assert _files_under(store) == ["jobs", "jobs/job-objects"]


async def test_object_routes_return_404_with_s3_storage(tmp_path):
    settings = Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path,
        storage="s3",
        s3_bucket="cac-unused",
        s3_access_key_id="unused",
        s3_secret_access_key="unused",
    )
    app = create_app(settings, temporal_client=UnusedTemporalClient())

    async with asgi_client(app) as client:
        response = await client.get(f"/v1/objects/{KEY}?expires=9999999999&signature=00")

    assert response.status_code == 404
    assert response.json()["detail"] == (
        "this API serves no objects because CAC_STORAGE is not local; use the URLs"
        " from POST /v1/jobs/{job_id}/io"
    )

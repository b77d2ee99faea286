"""LocalDirectoryStore: key checks, URL signatures and file transfers."""

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from config import Settings
from storage import (
    InvalidObjectKey,
    InvalidSignature,
    LocalDirectoryStore,
    ObjectStoreError,
    build_object_store,
    job_input_key,
    job_output_key,
    validate_key,
)

SECRET = b"local-store-test-secret-of-enough-length"
NOW = 1_800_000_000


@pytest.fixture
def store(tmp_path: Path) -> LocalDirectoryStore:
    return LocalDirectoryStore(
        tmp_path / "objects", public_base_url="http://127.0.0.1:9999/", secret=SECRET
    )


def _query(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path.removeprefix("/v1/objects/"), query["expires"][0], query["signature"][0]


def test_job_keys_follow_layout():
    assert job_input_key("job-0123") == "jobs/job-0123/input"
    assert job_output_key("job-0123") == "jobs/job-0123/output.tar.gz"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../secret",
        "jobs/../../etc/passwd",
        "jobs/./input",
        "/etc/passwd",
        "jobs//input",
        "jobs/job-1/",
        "jobs/.hidden",
        "jobs\\job-1\\input",
        "jobs/job 1/input",
        "jobs/job-1/input\x00",
        "a" * 1025,
    ],
)
def test_validate_key_rejects_unsafe_key(key):
    with pytest.raises(InvalidObjectKey):
        validate_key(key)


def test_job_key_rejects_job_id_with_slash():
    with pytest.raises(InvalidObjectKey) as raised:
        job_input_key("other-job/input")

    assert str(raised.value) == (
        "job id 'other-job/input' contains a slash, so it cannot name objects"
    )


def test_path_rejects_traversal(store):
    with pytest.raises(InvalidObjectKey):
        store.path("jobs/../../outside")


def test_presigned_url_points_at_api_with_expiry(store):
    upload = store.presign_upload("jobs/job-1/input", expires_in_seconds=600, now=NOW + 0.7)

    key, expires, signature = _query(upload.url)
    assert upload.url.startswith("http://127.0.0.1:9999/v1/objects/jobs/job-1/input?expires=")
    assert key == "jobs/job-1/input"
    assert expires == str(NOW + 600)
    assert len(signature) == 64
    assert upload.expires_at.timestamp() == NOW + 600


def test_verify_accepts_untampered_url(store):
    upload = store.presign_upload("jobs/job-1/input", expires_in_seconds=600, now=NOW)
    key, expires, signature = _query(upload.url)

    store.verify("PUT", key, expires=expires, signature=signature, now=NOW + 599)


def test_verify_rejects_expired_url(store):
    download = store.presign_download("jobs/job-1/output.tar.gz", expires_in_seconds=60, now=NOW)
    key, expires, signature = _query(download.url)

    with pytest.raises(InvalidSignature) as raised:
        store.verify("GET", key, expires=expires, signature=signature, now=NOW + 60)

    assert str(raised.value) == "the object URL expired at 2027-01-15T08:01:00+00:00"


def test_verify_rejects_changed_signature(store):
    upload = store.presign_upload("jobs/job-1/input", expires_in_seconds=600, now=NOW)
    key, expires, signature = _query(upload.url)
    changed = ("0" if signature[0] != "0" else "1") + signature[1:]

    with pytest.raises(InvalidSignature) as raised:
        store.verify("PUT", key, expires=expires, signature=changed, now=NOW)

    assert str(raised.value) == (
        "the object URL's signature does not match PUT of this key and expiry"
    )


def test_verify_rejects_extended_expiry(store):
    upload = store.presign_upload("jobs/job-1/input", expires_in_seconds=60, now=NOW)
    key, expires, signature = _query(upload.url)

    with pytest.raises(InvalidSignature) as raised:
        store.verify("PUT", key, expires=str(int(expires) + 3600), signature=signature, now=NOW)

    assert str(raised.value) == (
        "the object URL's signature does not match PUT of this key and expiry"
    )


def test_verify_rejects_other_key(store):
    upload = store.presign_upload("jobs/job-1/input", expires_in_seconds=60, now=NOW)
    _, expires, signature = _query(upload.url)

    with pytest.raises(InvalidSignature):
        store.verify("PUT", "jobs/job-2/input", expires=expires, signature=signature, now=NOW)


def test_verify_rejects_download_url_for_upload(store):
    download = store.presign_download("jobs/job-1/input", expires_in_seconds=60, now=NOW)
    key, expires, signature = _query(download.url)

    with pytest.raises(InvalidSignature) as raised:
        store.verify("PUT", key, expires=expires, signature=signature, now=NOW)

    assert str(raised.value) == (
        "the object URL's signature does not match PUT of this key and expiry"
    )


def test_verify_rejects_url_of_other_secret(store, tmp_path):
    other = LocalDirectoryStore(
        tmp_path / "objects", public_base_url="http://127.0.0.1:9999", secret=b"another-secret"
    )
    upload = other.presign_upload("jobs/job-1/input", expires_in_seconds=60, now=NOW)
    key, expires, signature = _query(upload.url)

    with pytest.raises(InvalidSignature):
        store.verify("PUT", key, expires=expires, signature=signature, now=NOW)


@pytest.mark.parametrize(
    ("expires", "signature", "message"),
    [
        (
            None,
            "ab",
            (
                "the object URL is not signed: the expires and signature query parameters"
                " are required"
            ),
        ),
        (
            "1800000060",
            None,
            (
                "the object URL is not signed: the expires and signature query parameters"
                " are required"
            ),
        ),
        (
            "soon",
            "ab",
            "the object URL's expires parameter 'soon' is not a Unix time in seconds",
        ),
        (
            "1800000060",
            "\u00e9t\u00e9",
            "the object URL's signature does not match GET of this key and expiry",
        ),
    ],
)
def test_verify_rejects_malformed_parameters(store, expires, signature, message):
    with pytest.raises(InvalidSignature) as raised:
        store.verify("GET", "jobs/job-1/input", expires=expires, signature=signature, now=NOW)

    assert str(raised.value) == message


def test_put_file_then_get_file_round_trips(store, tmp_path):
    source = tmp_path / "source"
    source.write_bytes(b"\x00\x01 input")

    store.put_file("jobs/job-1/input", source)
    found = store.get_file("jobs/job-1/input", tmp_path / "copy")

    assert found is True
    assert (tmp_path / "copy").read_bytes() == b"\x00\x01 input"
    assert (tmp_path / "objects" / "jobs" / "job-1" / "input").read_bytes() == b"\x00\x01 input"
    assert sorted(p.name for p in (tmp_path / "objects" / "jobs" / "job-1").iterdir()) == ["input"]


def test_get_file_of_missing_object_returns_false(store, tmp_path):
    assert store.get_file("jobs/job-1/input", tmp_path / "copy") is False
    assert store.get_file("jobs/job-1", tmp_path / "copy") is False
    assert not (tmp_path / "copy").exists()


def test_put_file_into_unwritable_root_raises_store_error(tmp_path):
    blocker = tmp_path / "objects"
    blocker.write_text("a file where the store's directory should be")
    store = LocalDirectoryStore(blocker, public_base_url="http://127.0.0.1:9999", secret=SECRET)
    source = tmp_path / "source"
    source.write_bytes(b"x")

    with pytest.raises(ObjectStoreError) as raised:
        store.put_file("jobs/job-1/input", source)

    assert str(raised.value).startswith("could not store object jobs/job-1/input: ")


def test_uri_is_file_uri_of_object(store, tmp_path):
    expected = (tmp_path / "objects" / "jobs" / "job-1" / "input").resolve().as_uri()

    assert store.uri("jobs/job-1/input") == expected


def test_build_object_store_defaults_to_local(tmp_path):
    settings = Settings(data_dir=tmp_path, api_port=8123)

    store = build_object_store(settings)

    assert isinstance(store, LocalDirectoryStore)
    assert store.root == (tmp_path / "objects").resolve()
    assert store.public_base_url == "http://127.0.0.1:8123"

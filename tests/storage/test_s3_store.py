"""S3Store against moto's S3 server on 127.0.0.1, with transfers through presigned URLs."""

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from config import Settings
from storage import ObjectStoreError, build_object_store, job_input_key, job_output_key
from storage.s3 import MAX_PRESIGN_SECONDS, S3Store
from tests.support.moto_s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    moto_s3_server,
    new_bucket_store,
)
from tests.support.processes import free_port


@pytest.fixture(scope="module")
def endpoint_url() -> Iterator[str]:
    with moto_s3_server() as url:
        yield url


@pytest.fixture
def store(endpoint_url) -> S3Store:
    return new_bucket_store(endpoint_url)


def test_presigned_upload_stores_object(store, tmp_path):
    key = job_input_key("job-upload")
    upload = store.presign_upload(key, expires_in_seconds=600)

    response = httpx.put(upload.url, content=b"input bytes")
    found = store.get_file(key, tmp_path / "copy")

    assert response.status_code == 200
    assert found is True
    assert (tmp_path / "copy").read_bytes() == b"input bytes"


def test_presigned_download_returns_object(store, tmp_path):
    key = job_output_key("job-download")
    source = tmp_path / "output.tar.gz"
    source.write_bytes(b"\x1f\x8b archive bytes")
    store.put_file(key, source)
    download = store.presign_download(key, expires_in_seconds=600)

    response = httpx.get(download.url)

    assert response.status_code == 200
    assert response.content == b"\x1f\x8b archive bytes"


def test_presigned_download_of_missing_object_is_404(store):
    download = store.presign_download(job_output_key("job-without-output"), expires_in_seconds=60)

    response = httpx.get(download.url)

    assert response.status_code == 404


def test_presigned_url_names_bucket_in_path_and_expiry(store, endpoint_url):
    before = int(time.time())
    upload = store.presign_upload("jobs/job-form/input", expires_in_seconds=900)
    after = int(time.time())

    url = urlsplit(upload.url)
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}" == endpoint_url
    assert url.path == f"/{store.bucket}/jobs/job-form/input"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Credential"][0].startswith(f"{ACCESS_KEY_ID}/")
    assert query["X-Amz-Credential"][0].endswith(f"/{REGION}/s3/aws4_request")
    assert before + 900 <= upload.expires_at.timestamp() <= after + 900


def test_presign_rejects_lifetime_over_seven_days(store):
    with pytest.raises(ValueError) as raised:
        store.presign_download("jobs/job-long/input", expires_in_seconds=MAX_PRESIGN_SECONDS + 1)

    assert str(raised.value) == (
        f"expires_in_seconds is {MAX_PRESIGN_SECONDS + 1}; S3 accepts 1 to 604800 seconds"
    )


def test_get_file_of_missing_object_returns_false(store, tmp_path):
    found = store.get_file(job_input_key("job-no-input"), tmp_path / "input")

    assert found is False
    assert not (tmp_path / "input").exists()


def test_uri_names_bucket_and_key(store):
    assert store.uri("jobs/job-1/input") == f"s3://{store.bucket}/jobs/job-1/input"


def test_put_file_to_missing_bucket_raises_store_error(endpoint_url, tmp_path):
    store = S3Store(
        "cac-no-such-bucket",
        region=REGION,
        endpoint_url=endpoint_url,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        path_style=True,
    )
    source = tmp_path / "file"
    source.write_bytes(b"x")

    with pytest.raises(ObjectStoreError) as raised:
        store.put_file("jobs/job-1/input", source)

    assert str(raised.value).startswith(
        "could not upload s3://cac-no-such-bucket/jobs/job-1/input: "
    )
    assert "NoSuchBucket" in str(raised.value)


def test_get_file_from_unreachable_endpoint_raises_store_error(tmp_path):
    store = S3Store(
        "cac-test",
        region=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        path_style=True,
    )

    with pytest.raises(ObjectStoreError) as raised:
        store.get_file("jobs/job-1/input", tmp_path / "input")

    assert str(raised.value).startswith("could not download s3://cac-test/jobs/job-1/input: ")


def test_build_object_store_reads_s3_settings(endpoint_url, tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        storage="s3",
        s3_bucket="cac-configured",
        s3_endpoint_url=endpoint_url,
        s3_region="eu-west-1",
        s3_access_key_id=ACCESS_KEY_ID,
        s3_secret_access_key=SECRET_ACCESS_KEY,
        s3_path_style=True,
    )

    store = build_object_store(settings)
    url = urlsplit(store.presign_upload("jobs/job-1/input", expires_in_seconds=60).url)

    assert isinstance(store, S3Store)
    assert url.path == "/cac-configured/jobs/job-1/input"
    assert "/eu-west-1/s3/aws4_request" in parse_qs(url.query)["X-Amz-Credential"][0]


def test_build_object_store_without_bucket_raises(tmp_path):
    with pytest.raises(ValueError) as raised:
        build_object_store(Settings(data_dir=tmp_path, storage="s3"))

    assert str(raised.value) == "CAC_S3_BUCKET is not set; it is required when CAC_STORAGE is s3"


def test_put_file_over_multipart_threshold_round_trips(store, tmp_path):
    # boto3 switches to a multipart upload above 8 MiB.
    payload = bytes(range(256)) * (9 * 1024 * 4)
    source = tmp_path / "large"
    source.write_bytes(payload)

    store.put_file("jobs/job-large/output.tar.gz", source)
    found = store.get_file("jobs/job-large/output.tar.gz", tmp_path / "copy")

    assert found is True
    assert (tmp_path / "copy").read_bytes() == payload


def test_public_endpoint_named_in_presigned_urls(endpoint_url, tmp_path):
    internal = new_bucket_store(endpoint_url)
    public_url = endpoint_url.replace("127.0.0.1", "localhost")
    store = S3Store(
        internal.bucket,
        region=REGION,
        endpoint_url=endpoint_url,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        path_style=True,
        public_endpoint_url=public_url,
    )

    upload = store.presign_upload("jobs/job-public/input", expires_in_seconds=60)
    httpx.put(upload.url, content=b"through the public name").raise_for_status()
    destination = tmp_path / "input"
    found = store.get_file("jobs/job-public/input", destination)

    assert urlsplit(upload.url).netloc == urlsplit(public_url).netloc
    assert found is True
    assert destination.read_bytes() == b"through the public name"

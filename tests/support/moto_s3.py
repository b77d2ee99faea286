"""moto's S3 emulator as an HTTP server on 127.0.0.1, for tests that send real S3 requests.

moto's server accepts any credentials and, as of moto 5.2, does not check the signature or
the expiry of presigned URLs, so tests against it prove the URLs' form and the transfers, not
S3's verification of them.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from storage.s3 import S3Store
from tests.support.processes import free_port

REGION = "us-east-1"
ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Run moto's server on a free port of 127.0.0.1 and yield its endpoint URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket_store(endpoint_url: str) -> S3Store:
    """Create a bucket that no other test uses and return a path-style store on it."""
    bucket = f"cac-test-{uuid.uuid4().hex[:12]}"
    admin = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )
    admin.create_bucket(Bucket=bucket)
    return S3Store(
        bucket,
        region=REGION,
        endpoint_url=endpoint_url,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        path_style=True,
    )

"""`S3Store`: objects in a bucket of any S3-compatible service, such as AWS S3 or MinIO.

Clients upload with a presigned PUT and download with a presigned GET, signed with
Signature Version 4, so the URLs go to the service directly and never through the API.
"""

import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.base import ObjectStoreError, PresignedUrl, validate_key

MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""Maximum lifetime of a Signature Version 4 presigned URL that S3 accepts: 7 days."""

_MISSING_OBJECT_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Store:
    """Objects under keys in one bucket."""

    def __init__(
        self,
        bucket: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        path_style: bool = False,
        public_endpoint_url: str | None = None,
    ) -> None:
        """Create the store; no request is sent until the first operation.

        Args:
            bucket: Bucket that contains the objects; it must exist.
            region: Region of the bucket; Signature Version 4 signs it into every URL.
            endpoint_url: Endpoint of an S3-compatible service; None uses AWS S3's.
            access_key_id: Access key; None uses boto3's default credential chain
                (environment, shared files, instance role).
            secret_access_key: Secret of `access_key_id`.
            path_style: Address the bucket in the path (`<endpoint>/<bucket>/<key>`) instead
                of the host name; MinIO and most emulators need it.
            public_endpoint_url: Endpoint at which clients outside reach the service, such as
                `http://localhost:9000` for MinIO in docker-compose, where the system itself
                uses `http://minio:9000`. Presigned URLs are signed for it. None uses
                `endpoint_url`.
        """
        self.bucket = bucket
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            retries={"mode": "standard"},
        )
        self._client = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        # A signature covers the host, so URLs for clients are signed by a client of their
        # endpoint. Presigning sends no request.
        self._presigner = self._client
        if public_endpoint_url is not None:
            self._presigner = boto3.client(
                "s3",
                region_name=region,
                endpoint_url=public_endpoint_url,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )

    def presign_upload(self, key: str, *, expires_in_seconds: int) -> PresignedUrl:
        """Return a presigned URL for a PUT of the object."""
        return self._presign("put_object", key, expires_in_seconds)

    def presign_download(self, key: str, *, expires_in_seconds: int) -> PresignedUrl:
        """Return a presigned URL for a GET of the object."""
        return self._presign("get_object", key, expires_in_seconds)

    def uri(self, key: str) -> str:
        """Return `s3://<bucket>/<key>`."""
        return f"s3://{self.bucket}/{validate_key(key)}"

    def put_file(self, key: str, source: Path) -> None:
        """Upload the file at `source`, in parts if it is large.

        Raises:
            ObjectStoreError: The upload failed after boto3's retries.
        """
        validate_key(key)
        try:
            self._client.upload_file(str(source), self.bucket, key)
        except (BotoCoreError, ClientError, S3UploadFailedError) as error:
            raise ObjectStoreError(f"could not upload {self.uri(key)}: {error}") from error

    def get_file(self, key: str, destination: Path) -> bool:
        """Download the object to `destination`; return False if there is no such object.

        Raises:
            ObjectStoreError: The download failed after boto3's retries.
        """
        validate_key(key)
        try:
            self._client.download_file(self.bucket, key, str(destination))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_OBJECT_CODES:
                return False
            raise ObjectStoreError(f"could not download {self.uri(key)}: {error}") from error
        except BotoCoreError as error:
            raise ObjectStoreError(f"could not download {self.uri(key)}: {error}") from error
        return True

    def _presign(self, operation: str, key: str, expires_in_seconds: int) -> PresignedUrl:
        validate_key(key)
        if not 1 <= expires_in_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(
                f"expires_in_seconds is {expires_in_seconds}; S3 accepts 1 to"
                f" {MAX_PRESIGN_SECONDS} seconds"
            )

        # Read before signing: botocore signs with a later time truncated to the second, so
        # the URL stays valid until this expiry or slightly after, never less.
        expires = int(time.time()) + expires_in_seconds
        url = self._presigner.generate_presigned_url(
            operation,
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=expires_in_seconds,
        )
        return PresignedUrl(url=url, expires_at=datetime.fromtimestamp(expires, UTC))

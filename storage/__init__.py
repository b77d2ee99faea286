"""Object storage of job inputs and outputs: a local directory or an S3-compatible bucket.

The layout of a job's objects is described in `storage.base`.
"""

from pathlib import Path

from config.settings import Settings
from storage.base import (
    InvalidObjectKey,
    InvalidSignature,
    ObjectStore,
    ObjectStoreError,
    PresignedUrl,
    job_input_key,
    job_output_key,
    validate_key,
)
from storage.local import LocalDirectoryStore

__all__ = [
    "InvalidObjectKey",
    "InvalidSignature",
    "LocalDirectoryStore",
    "ObjectStore",
    "ObjectStoreError",
    "PresignedUrl",
    "build_object_store",
    "job_input_key",
    "job_output_key",
    "local_objects_dir",
    "validate_key",
]


def local_objects_dir(data_dir: Path) -> Path:
    """Return the directory of the `local` store's objects inside the data directory."""
    return data_dir / "objects"


def build_object_store(settings: Settings) -> ObjectStore:
    """Build the store that `settings.storage` selects; no request is sent.

    The `local` store signs its URLs with a key derived from `CAC_JWT_SECRET`, so the API that
    presigns a URL also verifies it.

    Raises:
        ValueError: `storage` is `s3` and no bucket is set.
    """
    if settings.storage == "local":
        return LocalDirectoryStore(
            local_objects_dir(settings.data_dir),
            public_base_url=settings.public_base_url,
            secret=settings.jwt_secret.get_secret_value().encode(),
        )

    if not settings.s3_bucket:
        raise ValueError("CAC_S3_BUCKET is not set; it is required when CAC_STORAGE is s3")
    # Imported here, so that a process on the local store does not load boto3's S3 model.
    from storage.s3 import S3Store

    secret = settings.s3_secret_access_key
    return S3Store(
        settings.s3_bucket,
        region=settings.s3_region,
        endpoint_url=settings.s3_endpoint_url,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        path_style=settings.s3_path_style,
        public_endpoint_url=settings.s3_public_endpoint_url,
    )

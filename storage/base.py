"""The contract of an object store for job inputs and outputs, and the keys of a job's objects.

Each job has two objects, addressed by its id:

* `jobs/<job id>/input`: the job's one input, uploaded by the client before the job starts.
  It may be any file, such as a tar archive; the store keeps its bytes unchanged.
* `jobs/<job id>/output.tar.gz`: a gzip-compressed tar archive of the files that the job's
  command wrote to its output directory, uploaded by the provider after the command exits.

Keys contain the job id but not the tenant, because a provider receives only the job id. Job
ids are unique across tenants, and the API hands out URLs only for the caller's own jobs.

Clients move the bytes themselves through presigned URLs, so large files never pass through
the API's JSON routes. Providers stage the objects on the server side with `put_file` and
`get_file`. Both run blocking I/O, so async callers run them in a thread.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

MAX_KEY_LENGTH = 1024
"""Maximum key length in characters; S3 allows 1024 bytes and keys here are ASCII."""

_KEY_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class ObjectStoreError(Exception):
    """A store operation failed, such as an unreachable endpoint or a denied request."""


class InvalidObjectKey(ValueError):
    """A key is not a relative path of safe segments, so it could escape the store."""


class InvalidSignature(Exception):
    """A signed object URL is missing its signature, was altered, or has expired."""


@dataclass(frozen=True)
class PresignedUrl:
    """A URL that lets its holder read or write one object until it expires."""

    url: str
    """Absolute URL; the signature is in its query string."""

    expires_at: datetime
    """UTC time after which the store rejects the URL."""


class ObjectStore(Protocol):
    """Storage of job inputs and outputs. See the module docstring for the layout."""

    def presign_upload(self, key: str, *, expires_in_seconds: int) -> PresignedUrl:
        """Return a URL that accepts one HTTP PUT of the object's bytes as the request body."""
        ...

    def presign_download(self, key: str, *, expires_in_seconds: int) -> PresignedUrl:
        """Return a URL whose HTTP GET returns the object's bytes, or 404 while it is missing."""
        ...

    def uri(self, key: str) -> str:
        """Return the object's location in the store's own scheme, such as `s3://bucket/key`."""
        ...

    def put_file(self, key: str, source: Path) -> None:
        """Store the file at `source` as the object, replacing any object with that key.

        Raises:
            ObjectStoreError: The store could not be written.
        """
        ...

    def get_file(self, key: str, destination: Path) -> bool:
        """Write the object to `destination`; return False, writing nothing, if it is missing.

        Raises:
            ObjectStoreError: The store could not be read.
        """
        ...


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe relative path, else raise InvalidObjectKey.

    A safe key has 1 to `MAX_KEY_LENGTH` characters in segments separated by single slashes.
    Each segment uses letters, digits and `. _ -`, and does not start with a dot, so no
    segment is `.` or `..` and no key names a hidden file.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidObjectKey(f"object key must have 1 to {MAX_KEY_LENGTH} characters")
    for segment in key.split("/"):
        if not _KEY_SEGMENT.fullmatch(segment):
            raise InvalidObjectKey(
                f"invalid object key {key!r}: each segment between slashes must use letters,"
                " digits and . _ - and must not be empty or start with a dot"
            )
    return key


def job_input_key(job_id: str) -> str:
    """Return the key of the job's input object.

    Raises:
        InvalidObjectKey: The job id cannot be a key segment.
    """
    return f"{_job_prefix(job_id)}/input"


def job_output_key(job_id: str) -> str:
    """Return the key of the archive of the job's outputs.

    Raises:
        InvalidObjectKey: The job id cannot be a key segment.
    """
    return f"{_job_prefix(job_id)}/output.tar.gz"


def _job_prefix(job_id: str) -> str:
    # One segment, so that no job id can reach into another job's prefix.
    if "/" in job_id:
        raise InvalidObjectKey(f"job id {job_id!r} contains a slash, so it cannot name objects")
    return validate_key(f"jobs/{job_id}")

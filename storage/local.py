"""`LocalDirectoryStore`: objects as files under a directory, behind URLs that the API serves.

A presigned URL has the form `<public base URL>/v1/objects/<key>?expires=<t>&signature=<s>`.
`t` is the expiry in whole seconds since the Unix epoch. `s` is the hex HMAC-SHA256 of
`"<HTTP method>\\n<key>\\n<t>"` under a key derived from the server secret, so a URL signed for
GET cannot be used to PUT, and no part of it can be changed without invalidating it.
"""

import hashlib
import hmac
import os
import re
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from storage.base import (
    InvalidObjectKey,
    InvalidSignature,
    ObjectStoreError,
    PresignedUrl,
    validate_key,
)

OBJECTS_PATH = "/v1/objects"
"""Path under the public base URL where the API serves the objects."""

_SIGNING_LABEL = b"compute-as-credit object URL signing key"
_EXPIRES_PATTERN = re.compile(r"[0-9]{1,20}")


class LocalDirectoryStore:
    """Objects stored as files under `root`, one file per key."""

    def __init__(self, root: Path, *, public_base_url: str, secret: bytes) -> None:
        """Create the store; the directory is created on the first write.

        Args:
            root: Directory that contains the objects.
            public_base_url: URL at which clients reach the API, such as
                `http://127.0.0.1:8080`; presigned URLs start with it.
            secret: Server secret. The signing key is an HMAC of a fixed label under it, so
                the same secret can also sign tokens without the two signatures colliding.
        """
        self.root = root.resolve()
        self.public_base_url = public_base_url.rstrip("/")
        self._signing_key = hmac.new(secret, _SIGNING_LABEL, hashlib.sha256).digest()

    def presign_upload(
        self, key: str, *, expires_in_seconds: int, now: float | None = None
    ) -> PresignedUrl:
        """Return a signed URL for `PUT /v1/objects/<key>`; `now` defaults to the clock."""
        return self._presign("PUT", key, expires_in_seconds, now)

    def presign_download(
        self, key: str, *, expires_in_seconds: int, now: float | None = None
    ) -> PresignedUrl:
        """Return a signed URL for `GET /v1/objects/<key>`; `now` defaults to the clock."""
        return self._presign("GET", key, expires_in_seconds, now)

    def verify(
        self,
        method: str,
        key: str,
        *,
        expires: str | None,
        signature: str | None,
        now: float | None = None,
    ) -> None:
        """Check the query parameters of a presigned URL for `method` on `key`.

        The signature is checked before the expiry, so a URL whose expiry was altered is
        reported as invalid, not as expired.

        Raises:
            InvalidSignature: A parameter is missing or malformed, the signature does not
                match, or the URL has expired.
        """
        if not expires or not signature:
            raise InvalidSignature(
                "the object URL is not signed: the expires and signature query parameters"
                " are required"
            )
        if not _EXPIRES_PATTERN.fullmatch(expires):
            raise InvalidSignature(
                f"the object URL's expires parameter {expires!r} is not a Unix time in seconds"
            )

        expected = self._sign(method, key, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise InvalidSignature(
                f"the object URL's signature does not match {method} of this key and expiry"
            )

        current = time.time() if now is None else now
        if int(expires) <= current:
            expired_at = datetime.fromtimestamp(int(expires), UTC).isoformat()
            raise InvalidSignature(f"the object URL expired at {expired_at}")

    def uri(self, key: str) -> str:
        """Return the `file://` URI of the object's file."""
        return self.path(key).as_uri()

    def path(self, key: str) -> Path:
        """Return the file of the object, which may not exist.

        Raises:
            InvalidObjectKey: The key is unsafe or its path leaves `root`.
        """
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidObjectKey(f"object key {key!r} leads outside the store")
        return path

    def partial_path(self, key: str) -> Path:
        """Return a new hidden file name next to the object's file, for a write in progress.

        The caller writes the bytes there and renames the file onto `path(key)`, so that
        readers see either the previous object or the whole new one. Keys cannot start with a
        dot, so a partial file never has the name of an object.
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")

    def put_file(self, key: str, source: Path) -> None:
        """Copy the file at `source` into the store as the object `key`.

        Raises:
            ObjectStoreError: The copy failed.
        """
        try:
            partial = self.partial_path(key)
            try:
                shutil.copyfile(source, partial)
                os.replace(partial, self.path(key))
            finally:
                partial.unlink(missing_ok=True)
        except OSError as error:
            raise ObjectStoreError(f"could not store object {key}: {error}") from error

    def get_file(self, key: str, destination: Path) -> bool:
        """Copy the object `key` to `destination`; return False if there is no such object.

        Raises:
            ObjectStoreError: The copy failed.
        """
        source = self.path(key)
        # A key such as `jobs/<id>` may name a directory of objects, which is no object.
        if not source.is_file():
            return False
        try:
            shutil.copyfile(source, destination)
        except OSError as error:
            raise ObjectStoreError(f"could not read object {key}: {error}") from error
        return True

    def _presign(
        self, method: str, key: str, expires_in_seconds: int, now: float | None
    ) -> PresignedUrl:
        validate_key(key)
        if expires_in_seconds < 1:
            raise ValueError(f"expires_in_seconds is {expires_in_seconds}; use at least 1")
        current = time.time() if now is None else now
        expires = int(current) + expires_in_seconds
        query = urlencode({"expires": expires, "signature": self._sign(method, key, expires)})
        url = f"{self.public_base_url}{OBJECTS_PATH}/{quote(key)}?{query}"
        return PresignedUrl(url=url, expires_at=datetime.fromtimestamp(expires, UTC))

    def _sign(self, method: str, key: str, expires: int) -> str:
        message = f"{method}\n{key}\n{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

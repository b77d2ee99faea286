"""`PUT` and `GET /v1/objects/{key}`: the objects of the `local` store, behind signed URLs.

These routes take no bearer token. The URL's `expires` and `signature` query parameters, made
by `POST /v1/jobs/{job_id}/io`, are the authorization: a missing, altered or expired signature
gets 403. An upload streams to a file next to the object and replaces the object only once the
whole body has arrived, up to `MAX_OBJECT_BYTES`.
"""

import logging
import os
from typing import Annotated

import anyio
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse
from starlette.requests import ClientDisconnect

from api.errors import field_error
from api.limits import MAX_OBJECT_BYTES
from api.object_store import ObjectStoreDep
from storage import InvalidObjectKey, InvalidSignature, LocalDirectoryStore, ObjectStore

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/objects", tags=["objects"])

Expires = Annotated[
    str | None, Query(description="Expiry of the URL, in seconds since the Unix epoch.")
]
Signature = Annotated[str | None, Query(description="Hex HMAC-SHA256 signature of the URL.")]

_SIGNATURE_RESPONSES = {
    status.HTTP_403_FORBIDDEN: {"description": "The signature is missing, invalid or expired."},
    status.HTTP_404_NOT_FOUND: {"description": "The API does not serve objects (S3 storage)."},
}


@router.put(
    "/{key:path}",
    responses={
        **_SIGNATURE_RESPONSES,
        status.HTTP_413_CONTENT_TOO_LARGE: {
            "description": f"The body is larger than {MAX_OBJECT_BYTES} bytes."
        },
    },
)
async def put_object(
    key: str,
    request: Request,
    store: ObjectStoreDep,
    expires: Expires = None,
    signature: Signature = None,
) -> Response:
    """Store the request body as the object, replacing any earlier one."""
    local = _authorized_store(store, "PUT", key, expires, signature)
    target = local.path(key)

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_OBJECT_BYTES:
        raise _too_large()

    partial = local.partial_path(key)
    received = 0
    try:
        async with await anyio.open_file(partial, "wb") as file:
            async for chunk in request.stream():
                received += len(chunk)
                if received > MAX_OBJECT_BYTES:
                    raise _too_large()
                await file.write(chunk)
        os.replace(partial, target)
    except ClientDisconnect:
        logger.info("upload of object %s stopped after %d bytes: client disconnected", key, received)
        return Response(status_code=status.HTTP_400_BAD_REQUEST)
    finally:
        partial.unlink(missing_ok=True)

    logger.info("stored object %s, %d bytes", key, received)
    return Response(status_code=status.HTTP_200_OK)


@router.get(
    "/{key:path}",
    response_class=FileResponse,
    responses={
        **_SIGNATURE_RESPONSES,
        status.HTTP_200_OK: {"content": {"application/octet-stream": {}}},
    },
)
async def get_object(
    key: str,
    store: ObjectStoreDep,
    expires: Expires = None,
    signature: Signature = None,
) -> FileResponse:
    """Return the object's bytes."""
    local = _authorized_store(store, "GET", key, expires, signature)
    path = local.path(key)
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"object {key} not found")
    return FileResponse(path, media_type="application/octet-stream")


def _authorized_store(
    store: ObjectStore, method: str, key: str, expires: str | None, signature: str | None
) -> LocalDirectoryStore:
    """Return the local store if the URL is signed for `method` on `key`, else raise 4xx."""
    if not isinstance(store, LocalDirectoryStore):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "this API serves no objects because CAC_STORAGE is not local; use the URLs"
            " from POST /v1/jobs/{job_id}/io",
        )

    try:
        store.path(key)
    except InvalidObjectKey as error:
        raise field_error(("path", "key"), str(error)) from None

    try:
        store.verify(method, key, expires=expires, signature=signature)
    except InvalidSignature as error:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{error}; request a new URL with POST /v1/jobs/{{job_id}}/io",
        ) from None
    return store


def _too_large() -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the object is larger than {MAX_OBJECT_BYTES} bytes",
    )

"""FastAPI dependency for the object store of job inputs and outputs."""

from typing import Annotated

from fastapi import Depends, Request

from storage import ObjectStore


def get_object_store(request: Request) -> ObjectStore:
    """Return the object store that the app was created with."""
    return request.app.state.object_store


ObjectStoreDep = Annotated[ObjectStore, Depends(get_object_store)]

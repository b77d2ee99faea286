"""The baseline of `bench/api.py`: an endpoint that only starts a workflow, with no
authentication, validation, idempotency or search attributes.

Run it with `uvicorn bench.bare_api:app`; it connects to `CAC_TEMPORAL_ADDRESS`.
"""

import os
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from bench.bare_workflow import BareWorkflow


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.client = await Client.connect(os.environ["CAC_TEMPORAL_ADDRESS"])
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/bare", status_code=201)
async def start_bare() -> dict[str, str]:
    """Start a `BareWorkflow` that no worker runs and return its id."""
    workflow_id = f"bare-{uuid.uuid4().hex}"
    await app.state.client.start_workflow(
        BareWorkflow.run, 7, id=workflow_id, task_queue=os.environ["CAC_TASK_QUEUE"]
    )
    return {"jobId": workflow_id}

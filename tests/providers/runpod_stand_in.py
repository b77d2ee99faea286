"""A local stand-in for RunPod's REST and GraphQL APIs, served over real HTTP by uvicorn.

It implements the calls that `providers.runpod` makes, with the request and response shapes
of RunPod's documentation: `POST/GET /v1/pods`, `GET/DELETE /v1/pods/{id}` and, on
`POST /graphql`, the `gpuTypes` query and the `podRentInterruptable` mutation. GraphQL errors come
in a 200 response. REST error bodies are `{"error": "..."}`, an assumption because RunPod's
OpenAPI document gives no schema for them.

Faults are injected by setting attributes of `RunPodState`; the tests reset it per test.
"""

import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "stand-in-key"

NO_CAPACITY_MESSAGE = (
    "There are no longer any instances available with the requested specifications."
    " Please refresh and try again."
)


@dataclass
class GpuTypePrice:
    """A GPU type that the stand-in offers, with its prices in USD per GPU-hour."""

    id: str
    display_name: str
    memory_gb: int
    on_demand: str | None
    minimum_bid: str | None
    stock_status: str | None = "High"


@dataclass
class RunPodState:
    """The stand-in's pods and the faults it injects."""

    gpu_types: list[GpuTypePrice] = field(default_factory=list)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    """Method and path of every request received, in order."""

    no_capacity: bool = False
    """Creates fail with RunPod's no-capacity message."""

    rate_limited: int = 0
    """Number of next requests that get 429 with `Retry-After: retry_after`."""

    retry_after: str = "0"

    rate_limited_creates: int = 0
    """Number of next creates (REST or GraphQL) that get 429 with `Retry-After: retry_after`."""

    server_errors: int = 0
    """Number of next requests that get 500 without doing anything."""

    fail_after_create: bool = False
    """The next create makes the pod and then responds 500, as RunPod's REST API has done."""

    fail_create: bool = False
    """The next create responds 500 without making a pod."""

    start_pending: bool = False
    """New pods have no `lastStartedAt` yet."""

    running_after_delete: int = 0
    """Number of reads after a delete that still show the pod RUNNING."""

    charge_per_gpu: str | None = None
    """USD per GPU-hour that new pods report in `costPerHr` instead of their offered price,
    as RunPod's bill drifts from its catalog."""

    def reset(self) -> None:
        """Forget every pod and fault; keep the GPU types."""
        gpu_types = self.gpu_types
        self.__init__()
        self.gpu_types = gpu_types

    def live_pods(self) -> int:
        """Return the number of pods that were created and not terminated."""
        return sum(1 for pod in self.pods.values() if pod["desiredStatus"] != "TERMINATED")

    def create_pod(
        self,
        *,
        name: str,
        image: str,
        gpu_type_id: str,
        gpu_count: int,
        interruptible: bool,
        cost_per_hr: str,
        env: dict[str, str],
        start_cmd: list[str],
    ) -> dict[str, Any]:
        """Create a pod as RunPod would, and return its REST representation."""
        pod_id = secrets.token_hex(7)
        started = None if self.start_pending else _iso(time.time())
        per_gpu = Decimal(self.charge_per_gpu or cost_per_hr)
        pod = {
            "id": pod_id,
            "name": name,
            "image": image,
            "desiredStatus": "RUNNING",
            "interruptible": interruptible,
            # A JSON number, as RunPod sends it: the whole pod's USD per hour.
            "costPerHr": float(per_gpu * gpu_count),
            "gpu": {"id": gpu_type_id, "count": gpu_count},
            "env": env,
            "dockerStartCmd": start_cmd,
            "lastStartedAt": started,
            "lastStatusChange": f"Rented by User: {_js_date(time.time())}",
            "_reads_after_delete": None,
        }
        self.pods[pod_id] = pod
        return pod


def _iso(moment: float) -> str:
    return (
        datetime.fromtimestamp(moment, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _js_date(moment: float) -> str:
    # The format of JavaScript's Date.toString(), which RunPod uses in lastStatusChange.
    return datetime.fromtimestamp(moment, timezone.utc).strftime(
        "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)"
    )


def _public(pod: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pod.items() if not key.startswith("_")}


def build_app(state: RunPodState) -> Starlette:
    """Return the ASGI app that serves `state`."""

    def fault(request: Request) -> Response | None:
        state.requests.append((request.method, request.url.path))
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"error": "invalid api key"}, status_code=401)
        if state.rate_limited > 0:
            state.rate_limited -= 1
            return JSONResponse(
                {"error": "too many requests"},
                status_code=429,
                headers={"Retry-After": state.retry_after},
            )
        if state.server_errors > 0:
            state.server_errors -= 1
            return JSONResponse({"error": "internal server error"}, status_code=500)
        return None

    async def pods(request: Request) -> Response:
        if (rejection := fault(request)) is not None:
            return rejection
        if request.method == "GET":
            name = request.query_params.get("name")
            listed = [
                _public(pod) for pod in state.pods.values() if name is None or pod["name"] == name
            ]
            return JSONResponse(listed)

        if (rejection := _rate_limit_create(state)) is not None:
            return rejection
        body = await request.json()
        if not body.get("name") or not body.get("imageName") or not body.get("gpuTypeIds"):
            return JSONResponse({"error": "name, imageName and gpuTypeIds are required"}, 400)
        if body.get("gpuCount", 1) < 1:
            return JSONResponse({"error": "gpuCount must be at least 1"}, status_code=400)
        if state.no_capacity:
            return JSONResponse({"error": f"create pod: {NO_CAPACITY_MESSAGE}"}, status_code=500)
        if state.fail_create:
            state.fail_create = False
            return JSONResponse({"error": "internal server error"}, status_code=500)

        gpu = _gpu_type(state, body["gpuTypeIds"][0])
        if gpu is None or gpu.on_demand is None:
            return JSONResponse({"error": f"create pod: {NO_CAPACITY_MESSAGE}"}, status_code=500)
        pod = state.create_pod(
            name=body["name"],
            image=body["imageName"],
            gpu_type_id=gpu.id,
            gpu_count=body.get("gpuCount", 1),
            interruptible=bool(body.get("interruptible")),
            cost_per_hr=gpu.on_demand,
            env=body.get("env") or {},
            start_cmd=body.get("dockerStartCmd") or [],
        )
        if state.fail_after_create:
            state.fail_after_create = False
            return JSONResponse({"error": "internal server error"}, status_code=500)
        return JSONResponse(_public(pod), status_code=201)

    async def pod(request: Request) -> Response:
        if (rejection := fault(request)) is not None:
            return rejection
        found = state.pods.get(request.path_params["pod_id"])
        if found is None:
            return JSONResponse({"error": "pod not found"}, status_code=404)

        if request.method == "DELETE":
            if found["_reads_after_delete"] is None:
                found["_reads_after_delete"] = state.running_after_delete
            if found["_reads_after_delete"] == 0:
                _terminate(found)
            return Response(status_code=204)

        pending = found["_reads_after_delete"]
        if pending is not None and found["desiredStatus"] != "TERMINATED":
            if pending <= 0:
                _terminate(found)
            else:
                found["_reads_after_delete"] = pending - 1
        return JSONResponse(_public(found))

    async def graphql(request: Request) -> Response:
        if (rejection := fault(request)) is not None:
            return rejection
        body = await request.json()
        query = body.get("query", "")
        if "gpuTypes" in query:
            return JSONResponse({"data": {"gpuTypes": _gpu_types_data(state, query)}})
        if "podRentInterruptable" in query:
            if (rejection := _rate_limit_create(state)) is not None:
                return rejection
            return _rent_interruptable(state, body.get("variables", {}).get("input", {}))
        return JSONResponse({"errors": [{"message": "unknown query"}]}, status_code=400)

    return Starlette(
        routes=[
            Route("/v1/pods", pods, methods=["GET", "POST"]),
            Route("/v1/pods/{pod_id}", pod, methods=["GET", "DELETE"]),
            Route("/graphql", graphql, methods=["POST"]),
        ]
    )


def _rate_limit_create(state: RunPodState) -> Response | None:
    if state.rate_limited_creates <= 0:
        return None
    state.rate_limited_creates -= 1
    return JSONResponse(
        {"error": "too many requests"}, status_code=429, headers={"Retry-After": state.retry_after}
    )


def _terminate(pod: dict[str, Any]) -> None:
    pod["desiredStatus"] = "TERMINATED"
    pod["lastStatusChange"] = f"Terminated by user: {_js_date(time.time())}"


def _gpu_type(state: RunPodState, gpu_type_id: str) -> GpuTypePrice | None:
    return next((gpu for gpu in state.gpu_types if gpu.id == gpu_type_id), None)


def _gpu_types_data(state: RunPodState, query: str) -> list[dict[str, Any]]:
    count_match = re.search(r"gpuCount:\s*(\d+)", query)
    count = int(count_match[1]) if count_match else 1
    gpu_types = []
    for gpu in state.gpu_types:
        # Prices are per GPU; the stand-in has every type in counts up to 8.
        available = count <= 8
        gpu_types.append(
            {
                "id": gpu.id,
                "displayName": gpu.display_name,
                "memoryInGb": gpu.memory_gb,
                "lowestPrice": {
                    "minimumBidPrice": _number(gpu.minimum_bid) if available else None,
                    "uninterruptablePrice": _number(gpu.on_demand) if available else None,
                    "stockStatus": gpu.stock_status if available else None,
                },
            }
        )
    return gpu_types


def _number(value: str | None) -> float | None:
    return None if value is None else float(value)


def _rent_interruptable(state: RunPodState, pod_input: dict[str, Any]) -> Response:
    if state.no_capacity:
        return JSONResponse({"errors": [{"message": NO_CAPACITY_MESSAGE}], "data": None})
    gpu = _gpu_type(state, pod_input.get("gpuTypeId", ""))
    if gpu is None or gpu.minimum_bid is None:
        return JSONResponse({"errors": [{"message": NO_CAPACITY_MESSAGE}], "data": None})
    if float(pod_input.get("bidPerGpu", 0)) < float(gpu.minimum_bid):
        return JSONResponse({"errors": [{"message": NO_CAPACITY_MESSAGE}], "data": None})

    env = {item["key"]: item["value"] for item in pod_input.get("env", [])}
    pod = state.create_pod(
        name=pod_input["name"],
        image=pod_input["imageName"],
        gpu_type_id=gpu.id,
        gpu_count=pod_input.get("gpuCount", 1),
        interruptible=True,
        cost_per_hr=str(pod_input["bidPerGpu"]),
        env=env,
        start_cmd=[pod_input.get("dockerArgs", "")],
    )
    pod["_bid_per_gpu"] = pod_input["bidPerGpu"]
    return JSONResponse(
        {
            "data": {
                "podRentInterruptable": {
                    "id": pod["id"],
                    "name": pod["name"],
                    "desiredStatus": "RUNNING",
                }
            }
        }
    )


class StandInServer:
    """The stand-in app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, state: RunPodState) -> None:
        self.state = state
        # The socket stays open and is handed to uvicorn, so no other process can take the port.
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            build_app(state), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="runpod-stand-in",
            daemon=True,
        )

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def graphql_url(self) -> str:
        """URL of the GraphQL endpoint."""
        return f"http://127.0.0.1:{self.port}/graphql"

    def start(self) -> None:
        """Start serving and wait until the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the RunPod stand-in did not start within 10 seconds")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

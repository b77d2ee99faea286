"""`runpod`: GPU pods on RunPod, through its REST and GraphQL APIs (see `providers.runpod_http`).

* Quotes come from GraphQL `gpuTypes { lowestPrice(input: {gpuCount, secureCloud}) }`:
  `uninterruptablePrice` is the on-demand price and `minimumBidPrice` the lowest spot bid, both
  in USD per GPU-hour. They are converted to micro-credits at `credits_per_usd`, rounded up.
* An on-demand pod is created with REST `POST /pods`. A spot pod is a bid of the quoted price
  per GPU with the GraphQL mutation `podRentInterruptable`, because REST cannot bid.
* The pod is named `cac-<client token>`. Before creating, and after a create whose outcome is
  unknown (5xx, timeout), the adapter looks the pod up by that name and adopts it, so one
  client token never launches two pods.
* Status is REST `GET /pods/{id}`; billable seconds run from the pod's `lastStartedAt` until
  now, or until the time in `lastStatusChange` once the pod stopped.
* Terminate is REST `DELETE /pods/{id}`, confirmed by reading the pod back as gone.

The job's command runs in the container through `sh -c`: after it exits, the pod stops itself
with `runpodctl stop pod $RUNPOD_POD_ID`, as RunPod's documentation shows for stopping a pod
from inside. A stopped pod (`desiredStatus` EXITED) reads as SUCCEEDED with no exit code,
because RunPod does not report the command's exit code.
"""

import asyncio
import logging
import re
import shlex
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from providers.base import (
    FINAL_INSTANCE_STATES,
    InstanceNotFound,
    InstanceState,
    InstanceStatus,
    ManagedInstance,
    Offer,
    PermanentProviderError,
    ProvisionRequest,
    QuoteRequest,
    TransientProviderError,
)
from providers.runpod_http import RequestOutcomeUnknown, RunPodHttp
from providers.usd import micros_to_usd, usd_to_micros

logger = logging.getLogger(__name__)

POD_NAME_PREFIX = "cac-"
MAX_POD_NAME_LENGTH = 191
"""Maximum pod name length that RunPod accepts (its OpenAPI `maxLength`)."""

RUNPOD_GPU_TYPES: dict[str, tuple[str, ...]] = {
    "A100": ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"),
    "H100": ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL"),
    "H200": ("NVIDIA H200",),
    "L4": ("NVIDIA L4",),
    "L40S": ("NVIDIA L40S",),
    "A40": ("NVIDIA A40",),
    "A6000": ("NVIDIA RTX A6000",),
    "RTX4090": ("NVIDIA GeForce RTX 4090",),
}
"""RunPod GPU type ids (from the `gpuTypeIds` enum of RunPod's REST API) offered for each of
the system's GPU names. A request may also name a RunPod GPU type id directly. RunPod has no
A10G, so an A10G request gets no RunPod offer."""

STOCK_RELIABILITY = {"High": 0.95, "Medium": 0.8, "Low": 0.5}
"""Estimated chance that a launch succeeds, by `lowestPrice.stockStatus`; an estimate, not a
measured rate. A missing status gets `UNKNOWN_STOCK_RELIABILITY`."""

UNKNOWN_STOCK_RELIABILITY = 0.5
SPOT_RELIABILITY_FACTOR = 0.8
"""Estimated extra risk of a spot bid (outbid at launch); an estimate."""

# Runs the job's command given as "$@", then stops the pod, because RunPod restarts a pod's
# container when it exits and would run the job again. `sleep` keeps the container from
# exiting in the seconds before the stop takes effect.
# NOTE: an image without `sh`, or without `runpodctl` (RunPod's own images have it), cannot
# stop its pod. The pod then stays RUNNING until the job's budget is spent and the workflow
# terminates it.
WRAPPER_SCRIPT = (
    '"$@"; code=$?; echo "cac: command exited with code $code"; '
    'runpodctl stop pod "$RUNPOD_POD_ID"; sleep infinity'
)

_GPU_TYPES_QUERY = """
query GpuTypes {
  gpuTypes {
    id
    displayName
    memoryInGb
    lowestPrice(input: {gpuCount: %d, secureCloud: %s}) {
      minimumBidPrice
      uninterruptablePrice
      stockStatus
    }
  }
}
"""

_RENT_INTERRUPTABLE_MUTATION = """
mutation RentInterruptable($input: PodRentInterruptableInput!) {
  podRentInterruptable(input: $input) {
    id
    name
    desiredStatus
  }
}
"""

_STATUS_CHANGE_TIME = re.compile(r"(\w{3} \w{3} \d{1,2} \d{4} \d{2}:\d{2}:\d{2}) GMT([+-]\d{4})")


def pod_name(client_token: str) -> str:
    """Return the name of the pod that a client token launches.

    Raises:
        PermanentProviderError: The name would be longer than RunPod accepts.
    """
    name = f"{POD_NAME_PREFIX}{client_token}"
    if len(name) > MAX_POD_NAME_LENGTH:
        raise PermanentProviderError(
            f"client token of {len(client_token)} characters is too long for a RunPod pod"
            f" name; use at most {MAX_POD_NAME_LENGTH - len(POD_NAME_PREFIX)}"
        )
    return name


class RunPodProvider:
    """Launches GPU pods on RunPod and reads their status and usage."""

    def __init__(
        self,
        name: str = "runpod",
        *,
        http: RunPodHttp,
        credits_per_usd: Decimal,
        cloud_type: str = "SECURE",
        container_disk_gb: int = 50,
        start_seconds: int = 120,
        lookup_attempts: int = 3,
        lookup_delay_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create the provider.

        Args:
            name: Name of the provider in the registry.
            http: Client of RunPod's APIs.
            credits_per_usd: Credits charged per USD of RunPod's price.
            cloud_type: "SECURE" or "COMMUNITY", RunPod's two clouds.
            container_disk_gb: Container disk of each pod in GB.
            start_seconds: Expected seconds from launch until the command runs; an estimate
                stated on every offer.
            lookup_attempts: Times that a pod is looked up by name after a create whose
                outcome is unknown, because a new pod may take a moment to be listed.
            lookup_delay_seconds: Seconds between those lookups.
            clock: Wall clock in seconds since the epoch, for billable seconds.
        """
        if cloud_type not in ("SECURE", "COMMUNITY"):
            raise ValueError(f"invalid RunPod cloud type {cloud_type!r}: use SECURE or COMMUNITY")
        self.name = name
        self.http = http
        self.credits_per_usd = credits_per_usd
        self.cloud_type = cloud_type
        self.container_disk_gb = container_disk_gb
        self.start_seconds = start_seconds
        self.lookup_attempts = lookup_attempts
        self.lookup_delay_seconds = lookup_delay_seconds
        self.clock = clock

        # Billable seconds last seen per pod, and the final status of pods this object
        # terminated, because a deleted pod no longer reports how long it ran.
        self._seen_billable: dict[str, int] = {}
        self._final: dict[str, InstanceStatus] = {}

    async def quote(self, request: QuoteRequest) -> list[Offer]:
        """Return an on-demand offer, and a spot offer if allowed, per matching GPU type.

        A GPU type without a price for the requested count is left out; RunPod leaves a
        price null when it has no such machine.

        Raises:
            TransientProviderError, PermanentProviderError: The price query failed.
        """
        if request.gpu_type is None or request.gpu_count < 1:
            return []
        wanted = _runpod_gpu_ids(request.gpu_type)

        secure = "true" if self.cloud_type == "SECURE" else "false"
        data = await self.http.graphql(_GPU_TYPES_QUERY % (request.gpu_count, secure))

        offers = []
        for gpu_type in data.get("gpuTypes") or []:
            if gpu_type.get("id", "").lower() not in wanted:
                continue
            offers.extend(self._offers_for(gpu_type, request))
        return offers

    async def provision(self, request: ProvisionRequest) -> str:
        """Create the pod for the request's client token, or adopt the one already created.

        Raises:
            PermanentProviderError: The offer is not this provider's, or RunPod rejected it.
            OutOfCapacity: RunPod has no machine for the offer, or rejected the bid.
            TransientProviderError: RunPod failed, or the create's outcome is still unknown
                after the lookups; provisioning again looks the pod up before creating.
        """
        offer = request.offer
        if offer.provider != self.name:
            raise PermanentProviderError(
                f"offer is for provider {offer.provider!r}, not {self.name!r}"
            )
        if not request.command:
            raise PermanentProviderError(f"command of job {request.job_id} is empty")
        name = pod_name(request.client_token)

        existing = await self._find_pod(name)
        if existing is not None:
            logger.info(
                "Adopted RunPod pod %s (%s) of job %s", existing["id"], name, request.job_id
            )
            return existing["id"]

        try:
            if offer.spot:
                pod_id = await self._bid_spot(name, request)
            else:
                pod_id = await self._deploy_on_demand(name, request)
        except RequestOutcomeUnknown as error:
            logger.warning(
                "Creating RunPod pod %s of job %s had an unknown outcome (%s); looking it up",
                name,
                request.job_id,
                error,
            )
            return await self._adopt_after_unknown_outcome(name, request.job_id, error)

        logger.info(
            "Launched RunPod %s pod %s (%s) of job %s",
            "spot" if offer.spot else "on-demand",
            pod_id,
            name,
            request.job_id,
        )
        return pod_id

    async def status(self, instance_id: str, now: float) -> InstanceStatus:
        """Return the pod's state and billable seconds; `now` is ignored.

        Raises:
            PermanentProviderError: RunPod does not know the pod.
            TransientProviderError: RunPod could not be reached.
        """
        pod = await self.http.rest("GET", f"/pods/{instance_id}")
        if pod is None:
            if instance_id in self._final:
                return self._final[instance_id]
            raise InstanceNotFound(f"RunPod pod {instance_id} not found")
        return self._status_of(pod)

    async def terminate(self, instance_id: str, now: float) -> InstanceStatus:
        """Delete the pod and return its final status once RunPod shows it gone.

        Raises:
            TransientProviderError: The pod is still there after the delete, or RunPod
                could not be reached; call again.
            PermanentProviderError: RunPod does not know the pod.
        """
        if instance_id in self._final:
            return self._final[instance_id]

        pod = await self.http.rest("GET", f"/pods/{instance_id}")
        if pod is None:
            raise InstanceNotFound(f"RunPod pod {instance_id} not found")
        before = self._status_of(pod)

        if pod.get("desiredStatus") != "TERMINATED":
            logger.info("Terminating RunPod pod %s", instance_id)
            await self.http.rest("DELETE", f"/pods/{instance_id}")

        after = await self.http.rest("GET", f"/pods/{instance_id}")
        if after is not None and after.get("desiredStatus") != "TERMINATED":
            raise TransientProviderError(
                f"RunPod pod {instance_id} is still {after.get('desiredStatus')} after the"
                " delete; call terminate again"
            )

        # A pod that had stopped by itself before keeps its own outcome and usage.
        if before.state in FINAL_INSTANCE_STATES:
            final = before
        else:
            final = InstanceStatus(
                instance_id,
                InstanceState.TERMINATED,
                billable_seconds=before.billable_seconds,
                message="terminated on request",
            )
        self._final[instance_id] = final
        logger.info(
            "RunPod pod %s is gone: %s after %d billable seconds",
            instance_id,
            final.state,
            final.billable_seconds,
        )
        return final

    async def list_managed_instances(self) -> list[ManagedInstance]:
        """Return the pods named `cac-...` that are not terminated.

        Raises:
            TransientProviderError, PermanentProviderError: The pod list could not be read.
        """
        pods = await self.http.rest("GET", "/pods") or []
        managed = []
        for pod in pods:
            name = pod.get("name") or ""
            if not name.startswith(POD_NAME_PREFIX) or pod.get("desiredStatus") == "TERMINATED":
                continue
            env = pod.get("env") if isinstance(pod.get("env"), dict) else {}
            managed.append(
                ManagedInstance(
                    instance_id=pod["id"],
                    job_id=env.get("CAC_JOB_ID", ""),
                    client_token=name[len(POD_NAME_PREFIX) :],
                )
            )
        return managed

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self.http.aclose()

    def _offers_for(self, gpu_type: dict[str, Any], request: QuoteRequest) -> list[Offer]:
        lowest = gpu_type.get("lowestPrice") or {}
        reliability = STOCK_RELIABILITY.get(lowest.get("stockStatus"), UNKNOWN_STOCK_RELIABILITY)
        count = request.gpu_count

        offers = []
        on_demand = lowest.get("uninterruptablePrice")
        if on_demand is not None:
            offers.append(
                self._offer(gpu_type["id"], count, Decimal(on_demand), False, reliability)
            )
        bid = lowest.get("minimumBidPrice")
        if request.spot_ok and bid is not None:
            offers.append(
                self._offer(
                    gpu_type["id"], count, Decimal(bid), True, reliability * SPOT_RELIABILITY_FACTOR
                )
            )
        return offers

    def _offer(
        self,
        gpu_type_id: str,
        gpu_count: int,
        usd_per_gpu_hour: Decimal,
        spot: bool,
        reliability: float,
    ) -> Offer:
        return Offer(
            provider=self.name,
            instance_type=gpu_type_id,
            region=self.cloud_type.lower(),
            gpu_type=gpu_type_id,
            gpu_count=gpu_count,
            spot=spot,
            price_per_hour_micros=usd_to_micros(usd_per_gpu_hour * gpu_count, self.credits_per_usd),
            start_seconds=self.start_seconds,
            reliability=reliability,
        )

    async def find_instance(self, client_token: str) -> str | None:
        """Return the id of the pod named after `client_token`, or None.

        Raises:
            TransientProviderError, PermanentProviderError: The pods could not be listed.
        """
        pod = await self._find_pod(pod_name(client_token))
        return None if pod is None else pod["id"]

    async def _find_pod(self, name: str) -> dict[str, Any] | None:
        pods = await self.http.rest("GET", "/pods", params={"name": name}) or []
        matches = [pod for pod in pods if pod.get("name") == name]
        if len(matches) > 1:
            logger.warning(
                "RunPod has %d pods named %s: %s; adopting the first that is not terminated",
                len(matches),
                name,
                ", ".join(pod["id"] for pod in matches),
            )
        live = [pod for pod in matches if pod.get("desiredStatus") != "TERMINATED"]
        if live:
            return live[0]
        return matches[0] if matches else None

    async def _adopt_after_unknown_outcome(
        self, name: str, job_id: str, error: RequestOutcomeUnknown
    ) -> str:
        for attempt in range(1, self.lookup_attempts + 1):
            pod = await self._find_pod(name)
            if pod is not None:
                logger.info(
                    "Adopted RunPod pod %s (%s) of job %s after %s", pod["id"], name, job_id, error
                )
                return pod["id"]
            if attempt < self.lookup_attempts:
                await asyncio.sleep(self.lookup_delay_seconds)
        raise TransientProviderError(
            f"RunPod pod {name} may or may not have been created ({error}), and it is not"
            " listed yet; provisioning again looks it up before creating another"
        )

    async def _deploy_on_demand(self, name: str, request: ProvisionRequest) -> str:
        body = {
            "name": name,
            "imageName": request.image,
            "computeType": "GPU",
            "cloudType": self.cloud_type,
            "gpuTypeIds": [request.offer.instance_type],
            "gpuCount": request.offer.gpu_count,
            "interruptible": False,
            "containerDiskInGb": self.container_disk_gb,
            "volumeInGb": 0,
            "ports": [],
            "dockerEntrypoint": ["sh", "-c", WRAPPER_SCRIPT, "cac-job"],
            "dockerStartCmd": list(request.command),
            "env": _job_env(request),
        }
        pod = await self.http.rest("POST", "/pods", body=body, creates=True)
        if not isinstance(pod, dict) or "id" not in pod:
            raise TransientProviderError(f"RunPod created pod {name} but returned no id: {pod!r}")
        return pod["id"]

    async def _bid_spot(self, name: str, request: ProvisionRequest) -> str:
        offer = request.offer
        # The bid is the quoted price per GPU, so the pod never costs more than was quoted.
        bid_per_gpu = micros_to_usd(
            offer.price_per_hour_micros // offer.gpu_count, self.credits_per_usd
        )
        arguments = ["sh", "-c", WRAPPER_SCRIPT, "cac-job", *request.command]
        pod_input = {
            "name": name,
            "imageName": request.image,
            "cloudType": self.cloud_type,
            "gpuTypeId": offer.instance_type,
            "gpuCount": offer.gpu_count,
            # GraphQL's Float is a JSON number; the Decimal has at most six places.
            "bidPerGpu": float(bid_per_gpu),
            "containerDiskInGb": self.container_disk_gb,
            "volumeInGb": 0,
            # NOTE: dockerArgs replaces the image's CMD only; an image with an ENTRYPOINT gets
            # the wrapper as arguments to it. REST, used for on-demand pods, sets both.
            "dockerArgs": shlex.join(arguments),
            "env": [{"key": key, "value": value} for key, value in _job_env(request).items()],
        }
        data = await self.http.graphql(
            _RENT_INTERRUPTABLE_MUTATION, {"input": pod_input}, creates=True
        )
        pod = data.get("podRentInterruptable")
        if not isinstance(pod, dict) or "id" not in pod:
            raise TransientProviderError(
                f"RunPod accepted the bid for {name} but returned no pod: {pod!r}"
            )
        return pod["id"]

    def _status_of(self, pod: dict[str, Any]) -> InstanceStatus:
        status = self._state_of(pod)
        status.price_per_hour_micros = self._charged_price(pod)
        return status

    def _charged_price(self, pod: dict[str, Any]) -> int | None:
        # adjustedCostPerHr is costPerHr after savings plans: what RunPod bills per hour for
        # the whole pod, in RunPod credits, which are USD.
        value = pod.get("adjustedCostPerHr") or pod.get("costPerHr")
        # RunPodHttp parses JSON numbers as Decimal.
        if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
            return None
        try:
            usd = Decimal(str(value))
        except InvalidOperation:
            logger.warning("RunPod pod %s has a non-numeric costPerHr %r", pod.get("id"), value)
            return None
        if not usd.is_finite() or usd < 0:
            return None
        return usd_to_micros(usd, self.credits_per_usd)

    def _state_of(self, pod: dict[str, Any]) -> InstanceStatus:
        pod_id = pod["id"]
        desired = pod.get("desiredStatus")
        started_at = _parse_iso(pod.get("lastStartedAt"))
        change = pod.get("lastStatusChange") or ""

        if desired == "RUNNING":
            if started_at is None:
                return InstanceStatus(pod_id, InstanceState.PENDING, billable_seconds=0)
            billable = _seconds_between(started_at, self.clock())
            self._seen_billable[pod_id] = max(billable, self._seen_billable.get(pod_id, 0))
            return InstanceStatus(pod_id, InstanceState.RUNNING, billable_seconds=billable)

        billable = self._stopped_billable_seconds(pod_id, started_at, change)
        if desired == "EXITED":
            return InstanceStatus(
                pod_id,
                InstanceState.SUCCEEDED,
                billable_seconds=billable,
                message=f"the pod stopped ({change}); RunPod does not report the exit code",
            )
        if desired == "TERMINATED":
            return InstanceStatus(
                pod_id, InstanceState.TERMINATED, billable_seconds=billable, message=change
            )

        logger.warning(
            "RunPod pod %s has unknown desiredStatus %r; reading it as PENDING", pod_id, desired
        )
        return InstanceStatus(
            pod_id, InstanceState.PENDING, billable_seconds=0, message=str(desired)
        )

    def _stopped_billable_seconds(self, pod_id: str, started_at: float | None, change: str) -> int:
        # NOTE: a spot pod that RunPod interrupted is also EXITED, and no field read here
        # distinguishes it from a pod that stopped itself, so it reads as SUCCEEDED.
        stopped_at = _status_change_time(change)
        if started_at is not None and stopped_at is not None:
            return _seconds_between(started_at, stopped_at)
        return self._seen_billable.get(pod_id, 0)


def _runpod_gpu_ids(gpu_type: str) -> set[str]:
    for name, ids in RUNPOD_GPU_TYPES.items():
        if name.lower() == gpu_type.lower():
            return {gpu_id.lower() for gpu_id in ids}
    return {gpu_type.lower()}


def _job_env(request: ProvisionRequest) -> dict[str, str]:
    return {**request.env, "CAC_JOB_ID": request.job_id}


def _parse_iso(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        logger.warning("Could not parse RunPod timestamp %r", value)
        return None


def _status_change_time(change: str) -> float | None:
    # lastStatusChange reads like "Exited by user: Fri Jul 12 2024 15:14:40 GMT-0400 (EDT)".
    match = _STATUS_CHANGE_TIME.search(change)
    if match is None:
        return None
    try:
        moment = datetime.strptime(f"{match[1]} {match[2]}", "%a %b %d %Y %H:%M:%S %z")
    except ValueError:
        return None
    return moment.timestamp()


def _seconds_between(start: float, end: float) -> int:
    # Round to milliseconds first, so float noise such as 90.0000001 does not bill a second.
    milliseconds = round((end - start) * 1000)
    return max(0, -(-milliseconds // 1000))

"""Prometheus metrics of jobs, placement attempts and credits, recorded by the worker.

The metrics live in `prometheus_client`'s default registry, which the worker serves on
`CAC_METRICS_PORT` (see `worker.metrics`). Amounts are counted in micro-credits
(1 credit = 1,000,000), as the ledger stores them. A counter's float64 value counts whole
micro-credits exactly up to 2**53, about 9 billion credits.

Activities run at least once, so a caller counts a ledger posting only when the ledger did not
replay it (`PostedTransaction.replayed`), and counts an attempt once per activity result.
"""

from enum import StrEnum

from prometheus_client import Counter


class AttemptOutcome(StrEnum):
    """Result of one provisioning attempt, the `outcome` label of `cac_placement_attempts_total`."""

    LAUNCHED = "launched"
    OUT_OF_CAPACITY = "out_of_capacity"
    FAILED = "failed"
    """The provider rejected the launch for another reason that a retry would not fix."""


JOB_STATUS_CHANGES = Counter(
    "cac_job_status_changes",
    "Jobs that entered each status. A job counts once per status it enters.",
    ["status"],
)

PLACEMENT_ATTEMPTS = Counter(
    "cac_placement_attempts",
    "Provisioning attempts, by provider and outcome.",
    ["provider", "outcome"],
)

CREDITS_HELD = Counter(
    "cac_credits_held_micros",
    "Micro-credits moved from tenants' available credits to held, one hold per job.",
)

CREDITS_CAPTURED = Counter(
    "cac_credits_captured_micros",
    "Micro-credits captured from holds as revenue: what settled jobs cost.",
)

CREDITS_RELEASED = Counter(
    "cac_credits_released_micros",
    "Micro-credits released from holds back to tenants' available credits.",
)


def record_job_status(status: str) -> None:
    """Count a job entering `status`, a `JobStatus` value such as `RUNNING`.

    Workflow code may call this only when it is not replaying, because a replay runs the same
    status changes again:

        if not workflow.unsafe.is_replaying():
            record_job_status(status)

    NOTE: a workflow task that ran but whose completion did not reach the server (the worker
    crashed in between) runs again without replaying, so such a change counts twice.
    """
    JOB_STATUS_CHANGES.labels(status=str(status)).inc()


def record_attempt(provider: str, outcome: AttemptOutcome | str) -> None:
    """Count one provisioning attempt on `provider` that ended with `outcome`.

    Raises:
        ValueError: `outcome` is not an `AttemptOutcome`.
    """
    PLACEMENT_ATTEMPTS.labels(provider=provider, outcome=AttemptOutcome(outcome).value).inc()


def record_hold(amount_micros: int) -> None:
    """Count `amount_micros` held for a job.

    Raises:
        ValueError: `amount_micros` is negative.
    """
    CREDITS_HELD.inc(_checked(amount_micros))


def record_capture(amount_micros: int) -> None:
    """Count `amount_micros` captured from a job's hold.

    Raises:
        ValueError: `amount_micros` is negative.
    """
    CREDITS_CAPTURED.inc(_checked(amount_micros))


def record_release(amount_micros: int) -> None:
    """Count `amount_micros` released from a job's hold.

    Raises:
        ValueError: `amount_micros` is negative.
    """
    CREDITS_RELEASED.inc(_checked(amount_micros))


def _checked(amount_micros: int) -> int:
    if amount_micros < 0:
        raise ValueError(f"amount_micros must not be negative, got {amount_micros}")
    return amount_micros

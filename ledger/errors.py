"""Errors that the ledger raises when a request breaks one of its rules.

Each is a business rejection: retrying the same request cannot succeed, so callers should not
retry it. `InsufficientFunds` is the exception, because a later grant can make the same request
succeed, and a failed request leaves nothing behind, so its key may be posted again.
"""


class LedgerError(Exception):
    """Base class of every rule violation that the ledger reports."""


class InvalidAmount(LedgerError):
    """An amount must be a positive integer number of micro-credits, at most 10**18."""

    def __init__(self, amount: object) -> None:
        super().__init__(
            f"invalid amount {amount!r}: must be a positive integer number of micro-credits,"
            " at most 10**18"
        )
        self.amount = amount


class InsufficientFunds(LedgerError):
    """A hold must not take more than the tenant's spendable credits.

    Spendable credits are the available balance without the credits of grants past their
    expiry, which `available_micros` reports.
    """

    def __init__(self, *, tenant_id: str, requested_micros: int, available_micros: int) -> None:
        super().__init__(
            f"insufficient funds for tenant {tenant_id!r}: requested {requested_micros}"
            f" micro-credits, available {available_micros}"
        )
        self.tenant_id = tenant_id
        self.requested_micros = requested_micros
        self.available_micros = available_micros


class IdempotencyConflict(LedgerError):
    """A transaction key, once posted, may be posted again only with the same contents.

    The contents compared are the kind, the job id, the amount, the reason and, for a grant,
    the expiry. `field` names the first that differs.
    """

    def __init__(
        self, *, tenant_id: str, key: str, field: str, posted: object, requested: object
    ) -> None:
        super().__init__(
            f"transaction key {key!r} of tenant {tenant_id!r} was already posted with"
            f" {field}={posted!r}, but this request has {field}={requested!r};"
            " use a new key for a different transaction"
        )
        self.tenant_id = tenant_id
        self.key = key
        self.field = field
        self.posted = posted
        self.requested = requested


class HoldExceeded(LedgerError):
    """Captures and releases of a job together must not exceed the amount held for it."""

    def __init__(self, *, job_id: str, requested_micros: int, remaining_micros: int) -> None:
        super().__init__(
            f"hold of job {job_id!r} exceeded: requested {requested_micros} micro-credits,"
            f" {remaining_micros} left to capture or release"
        )
        self.job_id = job_id
        self.requested_micros = requested_micros
        self.remaining_micros = remaining_micros


class UnknownHold(LedgerError):
    """A capture or release needs an earlier hold for the same job and tenant."""

    def __init__(self, *, tenant_id: str, job_id: str) -> None:
        super().__init__(f"no hold found for job {job_id!r} of tenant {tenant_id!r}")
        self.tenant_id = tenant_id
        self.job_id = job_id


class DuplicateHold(LedgerError):
    """A job has at most one hold, because its budget is held once, before provisioning."""

    def __init__(self, *, job_id: str) -> None:
        super().__init__(
            f"job {job_id!r} already has a hold; to retry the same hold, reuse its key"
        )
        self.job_id = job_id


class RefundExceeded(LedgerError):
    """Refunds of a job together must not exceed what was captured from it."""

    def __init__(self, *, job_id: str, requested_micros: int, refundable_micros: int) -> None:
        super().__init__(
            f"refund of job {job_id!r} exceeded: requested {requested_micros} micro-credits,"
            f" {refundable_micros} captured and not yet refunded"
        )
        self.job_id = job_id
        self.requested_micros = requested_micros
        self.refundable_micros = refundable_micros

"""Request and response bodies of the account and admin billing routes, in camelCase JSON.

Amounts leave as decimal strings of credits with six places. On a statement they are signed,
as seen from the tenant's available balance: a grant is positive, a hold negative.
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)

from api.credits import Credits, format_credits, parse_credits
from api.models import (
    CALLBACK_URL_SCHEMA,
    MAX_CALLBACK_URL_LENGTH,
    CamelModel,
    check_callback_url,
)
from ledger.posting import PostedTransaction

MAX_REASON_LENGTH = 1000
"""Maximum length of the reason of a grant or a refund, in characters."""


def _parse_optional_credits(value: object) -> object:
    return None if value is None else parse_credits(value)


def _parse_future_datetime(value: object) -> datetime:
    """Parse an ISO 8601 date and time with a timezone that lies in the future, as UTC.

    Only strings are accepted, because pydantic would also read a number as seconds since
    the epoch, which no operator means as an expiry.
    """
    example = "such as 2030-01-01T00:00:00Z"
    if not isinstance(value, str):
        # A ValueError, because pydantic reports a TypeError from a validator as a 500.
        raise ValueError(f"must be an ISO 8601 date and time string, {example}")  # noqa: TRY004
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time, {example}") from None
    if parsed.utcoffset() is None:
        raise ValueError(f"{value!r} has no timezone; add one, {example}")

    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        # Only within a day of year 1 or 9999, where the UTC time is out of datetime's range.
        raise ValueError(f"{value!r} is out of range") from None
    if parsed <= datetime.now(UTC):
        raise ValueError(f"{value!r} is not in the future")
    return parsed


OptionalCredits = Annotated[
    Decimal | None,
    BeforeValidator(_parse_optional_credits),
    PlainSerializer(lambda amount: None if amount is None else f"{amount:f}"),
]
"""A positive credit amount validated by `parse_credits`, or null."""

FutureDatetime = Annotated[datetime, BeforeValidator(_parse_future_datetime)]
"""A timezone-aware ISO 8601 string in the future, converted to UTC."""


class AccountView(CamelModel):
    """Body of `GET /v1/account`: the tenant's balances in credits."""

    tenant_id: str
    available: str
    held: str
    spent: str = Field(description="Captured from the tenant's jobs, minus refunds.")


class StatementEntryView(CamelModel):
    """One transaction on the tenant's statement."""

    transaction_id: int
    created_at: datetime = Field(description="When the transaction was posted, in UTC.")
    type: str = Field(description="grant, hold, capture, release, refund or expire.")
    job_id: str | None = Field(description="The job a hold, capture, release or refund is for.")
    amount: str = Field(
        description="Change of the available balance in credits: positive for a grant,"
        " release or refund, negative for a hold or expiry, zero for a capture."
    )
    held_change: str = Field(
        description="Change of the held balance in credits: positive for a hold, negative"
        " for a capture or release, else zero."
    )
    reason: str
    balance_after: str = Field(description="Available balance right after the transaction.")


class StatementView(CamelModel):
    """Body of `GET /v1/account/transactions`: one page of the statement, newest first."""

    entries: list[StatementEntryView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to read the next, older page; null on the last page."
    )


class _AdminRequest(CamelModel):
    # An unknown field is rejected rather than ignored, so that a misspelt `expiresAt` cannot
    # turn into credits that never expire.
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1,
        max_length=MAX_REASON_LENGTH,
        description="Why the credits move; the tenant's statement shows it.",
    )

    @field_validator("reason")
    @classmethod
    def _check_reason(cls, reason: str) -> str:
        if not reason.strip():
            raise ValueError("must not be blank")
        if "\0" in reason:
            raise ValueError("must not contain a NUL character")
        return reason


class GrantRequest(_AdminRequest):
    """Body of `POST /v1/admin/tenants/{tenant}/grants`."""

    amount: Credits = Field(description="Credits to grant.")
    expires_at: FutureDatetime | None = Field(
        default=None,
        description="When the granted credits expire, with a timezone; null for never.",
    )


class RefundRequest(_AdminRequest):
    """Body of `POST /v1/admin/jobs/{jobId}/refunds`."""

    amount: OptionalCredits = Field(
        default=None,
        description="Credits to refund; omitted or null for all that was captured from the"
        " job and not refunded yet.",
    )


class PostedTransactionView(CamelModel):
    """Body of a grant or refund response: the transaction that the ledger posted."""

    transaction_id: int
    tenant_id: str
    type: str
    job_id: str | None
    amount: str = Field(description="Credits moved into the tenant's available balance.")
    reason: str
    expires_at: datetime | None = Field(
        default=None, description="Expiry of granted credits; null for never and for refunds."
    )
    key: str = Field(description="The Idempotency-Key, which is the ledger's transaction key.")
    replayed: bool = Field(
        description="True when the key was posted before and this is that transaction."
    )

    @classmethod
    def from_posted(
        cls, posted: PostedTransaction, *, reason: str, expires_at: datetime | None = None
    ) -> "PostedTransactionView":
        """Build the response body from a transaction that the ledger posted or replayed."""
        return cls(
            transaction_id=posted.transaction_id,
            tenant_id=posted.tenant_id,
            type=posted.kind,
            job_id=posted.job_id,
            amount=format_credits(posted.amount_micros),
            reason=reason,
            expires_at=expires_at,
            key=posted.key,
            replayed=posted.replayed,
        )


class LowBalanceAlertRequest(CamelModel):
    """Body of `PUT /v1/account/alerts/low-balance`."""

    threshold: Credits = Field(description="Notify when available credits fall below this.")
    callback_url: Annotated[str, AfterValidator(check_callback_url)] = Field(
        max_length=MAX_CALLBACK_URL_LENGTH,
        description="http or https URL that receives the signed notice as a POST.",
        json_schema_extra=CALLBACK_URL_SCHEMA,
    )


class LowBalanceAlertView(CamelModel):
    """A tenant's low-balance alert."""

    threshold: str
    callback_url: str
    armed: bool = Field(
        description="True while available credits are at or above the threshold, so the next"
        " fall below notifies."
    )

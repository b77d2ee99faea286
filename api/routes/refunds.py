"""`/v1/admin/jobs/{job_id}/refunds`: operators give back part or all of a job's cost."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status
from sqlalchemy.engine import Engine

from api.auth import BILLING_ADMIN
from api.billing_models import PostedTransactionView, RefundRequest
from api.credits import format_credits
from api.deps import LedgerEngineDep, require_scope
from api.errors import field_error
from api.json_route import DecimalJSONRoute
from api.ledger_keys import LedgerKey, conflict_error
from ledger.alerts import rearm_low_balance
from ledger.balances import get_hold
from ledger.errors import IdempotencyConflict, RefundExceeded
from ledger.money import MAX_MICROS, credits_to_micros
from ledger.operations import PostedTransaction, refund

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/admin/jobs",
    tags=["admin"],
    route_class=DecimalJSONRoute,
    dependencies=[Depends(require_scope(BILLING_ADMIN))],
)

JobId = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]


@router.post(
    "/{job_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    responses={
        status.HTTP_200_OK: {
            "model": PostedTransactionView,
            "description": "A retry with a known Idempotency-Key: the refund it posted first.",
        },
        status.HTTP_404_NOT_FOUND: {"description": "The ledger has no hold for this job."},
        status.HTTP_422_UNPROCESSABLE_CONTENT: {
            "description": "Invalid body, more than the job's refundable amount, a missing"
            " Idempotency-Key, or a key reused with a different request."
        },
    },
)
def create_refund(
    job_id: JobId,
    body: RefundRequest,
    key: LedgerKey,
    engine: LedgerEngineDep,
    response: Response,
) -> PostedTransactionView:
    """Refund a job's captured cost to the tenant that paid it, from platform revenue."""
    # A plain def, so that FastAPI runs the blocking ledger calls in its thread pool.
    hold = get_hold(engine, job_id)
    if hold is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no hold in the ledger")

    try:
        if body.amount is None:
            posted = _refund_rest(
                engine, tenant_id=hold.tenant_id, job_id=job_id, key=key, reason=body.reason
            )
        else:
            posted = refund(
                engine,
                tenant_id=hold.tenant_id,
                job_id=job_id,
                amount_micros=credits_to_micros(body.amount),
                key=key,
                reason=body.reason,
            )
    except RefundExceeded as error:
        refundable = format_credits(error.refundable_micros)
        if body.amount is None:
            message = f"job {job_id} has nothing left to refund ({refundable} credits)"
        else:
            message = f"exceeds what job {job_id} has left to refund: {refundable} credits"
        logger.info("job %s: refund rejected: %s", job_id, error)
        raise field_error(("body", "amount"), message) from None
    except IdempotencyConflict as error:
        logger.info("job %s: refund rejected: %s", job_id, error)
        raise conflict_error(error) from None

    rearm_low_balance(engine, hold.tenant_id)
    if posted.replayed:
        response.status_code = status.HTTP_200_OK
    logger.info(
        "job %s: %s refund %d of %d micro-credits to tenant %s, key %r",
        job_id,
        "replayed" if posted.replayed else "posted",
        posted.transaction_id,
        posted.amount_micros,
        hold.tenant_id,
        key,
    )
    return PostedTransactionView.from_posted(posted, reason=body.reason)


def _refund_rest(
    engine: Engine, *, tenant_id: str, job_id: str, key: str, reason: str
) -> PostedTransaction:
    """Refund all that the job has left to refund, as the ledger reads it under its lock.

    The first request asks for `MAX_MICROS`, more than any job can have captured unless that
    is exactly what is left. The ledger rejects it and writes nothing, and its error carries
    the refundable amount, which the second request posts. A key that was posted before makes
    the ledger report the amount it was posted with instead, and posting that amount replays
    the first refund, even after nothing is left to refund.

    Raises:
        RefundExceeded: nothing is left to refund, or a concurrent refund took part of it.
        IdempotencyConflict: `key` was posted before for another transaction or reason.
    """
    try:
        return refund(
            engine,
            tenant_id=tenant_id,
            job_id=job_id,
            amount_micros=MAX_MICROS,
            key=key,
            reason=reason,
        )
    except RefundExceeded as error:
        if error.refundable_micros == 0:
            raise
        amount_micros = error.refundable_micros
    except IdempotencyConflict as error:
        if error.field != "amount" or not isinstance(error.posted, int):
            raise
        amount_micros = error.posted

    return refund(
        engine,
        tenant_id=tenant_id,
        job_id=job_id,
        amount_micros=amount_micros,
        key=key,
        reason=reason,
    )

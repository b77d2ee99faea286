"""`/v1/admin/tenants/{tenant}/grants`: operators give a tenant credits."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from api.auth import BILLING_ADMIN
from api.billing_models import GrantRequest, PostedTransactionView
from api.deps import LedgerEngineDep, require_scope
from api.errors import field_error
from api.json_route import DecimalJSONRoute
from api.ledger_keys import LedgerKey, conflict_error
from ledger.alerts import rearm_low_balance
from ledger.errors import IdempotencyConflict
from ledger.models import PLATFORM_TENANT_ID
from ledger.money import credits_to_micros
from ledger.operations import grant

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/admin/tenants",
    tags=["admin"],
    route_class=DecimalJSONRoute,
    dependencies=[Depends(require_scope(BILLING_ADMIN))],
)

TenantId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Tenant to grant credits to: the `sub` of its tokens.",
    ),
]


@router.post(
    "/{tenant}/grants",
    status_code=status.HTTP_201_CREATED,
    responses={
        status.HTTP_200_OK: {
            "model": PostedTransactionView,
            "description": "A retry with a known Idempotency-Key: the grant it posted first.",
        },
        status.HTTP_422_UNPROCESSABLE_CONTENT: {
            "description": "Invalid body or tenant, a missing Idempotency-Key, or a key reused"
            " with a different request."
        },
    },
)
def create_grant(
    tenant: TenantId,
    body: GrantRequest,
    key: LedgerKey,
    engine: LedgerEngineDep,
    response: Response,
) -> PostedTransactionView:
    """Grant credits to a tenant, moving them from platform funding to its available balance."""
    # A plain def, so that FastAPI runs the blocking ledger call in its thread pool.
    if tenant == PLATFORM_TENANT_ID:
        raise field_error(
            ("path", "tenant"), f"{tenant!r} is the platform's own tenant id, not a customer's"
        )

    amount_micros = credits_to_micros(body.amount)
    try:
        posted = grant(
            engine,
            tenant_id=tenant,
            amount_micros=amount_micros,
            key=key,
            reason=body.reason,
            expires_at=body.expires_at,
        )
    except IdempotencyConflict as error:
        logger.info("grant to tenant %s rejected: %s", tenant, error)
        raise conflict_error(error) from None

    rearm_low_balance(engine, tenant)
    if posted.replayed:
        response.status_code = status.HTTP_200_OK
    logger.info(
        "%s grant %d of %d micro-credits to tenant %s, key %r, expiring %s",
        "replayed" if posted.replayed else "posted",
        posted.transaction_id,
        posted.amount_micros,
        tenant,
        key,
        body.expires_at.isoformat() if body.expires_at else "never",
    )
    return PostedTransactionView.from_posted(
        posted, reason=body.reason, expires_at=body.expires_at
    )

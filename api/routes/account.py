"""`/v1/account`: the caller's credit balances, statement and low-balance alert."""

import logging
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, status

from api.auth import BILLING_READ
from api.billing_models import (
    AccountView,
    LowBalanceAlertRequest,
    LowBalanceAlertView,
    StatementEntryView,
    StatementView,
)
from api.credits import format_credits
from api.deps import CurrentTenant, LedgerEngineDep, require_scope
from api.errors import field_error
from ledger.alerts import (
    LowBalanceAlert,
    delete_low_balance_alert,
    get_low_balance_alert,
    set_low_balance_alert,
)
from ledger.balances import get_balances
from ledger.money import credits_to_micros
from ledger.statements import StatementEntry, get_statement

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/account",
    tags=["account"],
    dependencies=[Depends(require_scope(BILLING_READ))],
)

DEFAULT_STATEMENT_LIMIT = 50
MAX_STATEMENT_LIMIT = 200

# Routes are plain defs, so that FastAPI runs the blocking database reads in its thread pool.


@router.get("")
def get_account(tenant: CurrentTenant, engine: LedgerEngineDep) -> AccountView:
    """Return the caller's available, held and spent credits."""
    balances = get_balances(engine, tenant)
    return AccountView(
        tenant_id=tenant,
        available=format_credits(balances.available_micros),
        held=format_credits(balances.held_micros),
        spent=format_credits(balances.spent_micros),
    )


@router.get(
    "/transactions",
    responses={
        status.HTTP_422_UNPROCESSABLE_CONTENT: {
            "description": "`limit` out of range, or a `cursor` that no page returned."
        }
    },
)
def list_transactions(
    tenant: CurrentTenant,
    engine: LedgerEngineDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_STATEMENT_LIMIT, description="Most entries on the page.")
    ] = DEFAULT_STATEMENT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(description="`nextCursor` of the previous page; omit for the newest page."),
    ] = None,
) -> StatementView:
    """Return one page of the caller's transactions, newest first."""
    invalid_cursor = field_error(
        ("query", "cursor"),
        "invalid cursor: pass the nextCursor of a previous page unchanged, or omit it",
    )
    try:
        page = get_statement(engine, tenant, limit=limit, cursor=cursor)
    except ValueError:
        raise invalid_cursor from None
    except (OverflowError, sa.exc.DataError):
        # NOTE: `get_statement` accepts a cursor whose transaction id exceeds a 64-bit integer,
        # and the database driver then fails on it. Until the ledger rejects such a cursor as
        # a ValueError, these two errors with a cursor present are that case.
        if cursor is None:
            raise
        raise invalid_cursor from None
    return StatementView(
        entries=[_entry_view(entry) for entry in page.entries], next_cursor=page.next_cursor
    )


def _entry_view(entry: StatementEntry) -> StatementEntryView:
    return StatementEntryView(
        transaction_id=entry.transaction_id,
        created_at=entry.created_at,
        type=entry.kind,
        job_id=entry.job_id,
        amount=format_credits(entry.available_change_micros),
        held_change=format_credits(entry.held_change_micros),
        reason=entry.reason,
        balance_after=format_credits(entry.available_after_micros),
    )


@router.get(
    "/alerts/low-balance",
    responses={status.HTTP_404_NOT_FOUND: {"description": "The tenant has no alert."}},
)
def get_low_balance(tenant: CurrentTenant, engine: LedgerEngineDep) -> LowBalanceAlertView:
    """Return the caller's low-balance alert."""
    alert = get_low_balance_alert(engine, tenant)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no low-balance alert is set")
    return _alert_view(alert)


@router.put("/alerts/low-balance")
def put_low_balance(
    body: LowBalanceAlertRequest, tenant: CurrentTenant, engine: LedgerEngineDep
) -> LowBalanceAlertView:
    """Set the caller's low-balance alert: each time a job's hold takes the available credits
    below `threshold`, `callbackUrl` receives one signed notice, until they are back above it.

    Setting it arms it, so a hold while the balance is already below notifies once.
    """
    alert = set_low_balance_alert(
        engine,
        tenant_id=tenant,
        threshold_micros=credits_to_micros(body.threshold),
        callback_url=body.callback_url,
    )
    logger.info("tenant %s set a low-balance alert at %d micro-credits", tenant, alert.threshold_micros)
    return _alert_view(alert)


@router.delete(
    "/alerts/low-balance",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={status.HTTP_404_NOT_FOUND: {"description": "The tenant has no alert."}},
)
def delete_low_balance(tenant: CurrentTenant, engine: LedgerEngineDep) -> None:
    """Remove the caller's low-balance alert."""
    if not delete_low_balance_alert(engine, tenant):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no low-balance alert is set")


def _alert_view(alert: LowBalanceAlert) -> LowBalanceAlertView:
    return LowBalanceAlertView(
        threshold=format_credits(alert.threshold_micros),
        callback_url=alert.callback_url,
        armed=alert.armed,
    )

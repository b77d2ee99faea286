"""`/v1/webhooks/secret`: the key that signs the caller's webhook deliveries."""

from fastapi import APIRouter, Depends

from api.auth import JOBS_READ
from api.deps import CurrentTenant, SettingsDep, require_scope
from api.models import WebhookSecretView

router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    dependencies=[Depends(require_scope(JOBS_READ))],
)


@router.get("/secret")
def get_webhook_secret(tenant: CurrentTenant, settings: SettingsDep) -> WebhookSecretView:
    """Return the secret that signs the tenant's webhook deliveries.

    Deliveries carry `Webhook-Timestamp` and `Webhook-Signature: v1=<hex>`, the HMAC-SHA256 of
    `<timestamp>.<body>` under this secret; `sdk.webhooks.verify_signature` checks both. The
    secret is derived from the server's key, so it stays the same until that key changes.
    """
    return WebhookSecretView(tenant_id=tenant, secret=settings.tenant_webhook_secret(tenant))

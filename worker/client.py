"""The Temporal client that the worker, the API and the command line share."""

from temporalio.client import Client

from config import Settings


async def connect_temporal(settings: Settings) -> Client:
    """Connect to the configured Temporal frontend and namespace."""
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)

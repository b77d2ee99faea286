"""Registration of the job workflows' search attributes in a Temporal namespace."""

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.service import RPCError, RPCStatusCode

from workflows.search_attributes import JOB_SEARCH_ATTRIBUTES

logger = logging.getLogger(__name__)


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register every job search attribute that `namespace` lacks; return the names added.

    Safe to run again: attributes that exist are left as they are.

    Raises:
        ValueError: An attribute exists with another type, which the job workflows cannot use.
        temporalio.service.RPCError: The server rejected the request.
    """
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as error:
        if error.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        # Temporal's time-skipping test server can add search attributes but not list them.
        return await _add_each(client, namespace)
    registered = {**existing.system_attributes, **existing.custom_attributes}

    missing: dict[str, IndexedValueType.ValueType] = {}
    for key in JOB_SEARCH_ATTRIBUTES:
        wanted = int(key.indexed_value_type)
        found = registered.get(key.name)
        if found is None:
            missing[key.name] = wanted
        elif found != wanted:
            raise ValueError(
                f"search attribute {key.name} exists in namespace {namespace} as"
                f" {SearchAttributeIndexedValueType(found).name}, but job workflows need"
                f" {SearchAttributeIndexedValueType(wanted).name}; remove or rename it"
            )

    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
        logger.info(
            "registered search attributes %s in namespace %s", ", ".join(sorted(missing)), namespace
        )
    return sorted(missing)


async def _add_each(client: Client, namespace: str) -> list[str]:
    added = []
    for key in JOB_SEARCH_ATTRIBUTES:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={key.name: int(key.indexed_value_type)},
                )
            )
        except RPCError as error:
            if error.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            continue
        added.append(key.name)
    return sorted(added)

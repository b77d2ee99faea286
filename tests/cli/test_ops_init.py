"""`cac ops init` against a Temporal dev server that starts without the job search attributes.

`cac` runs its own event loop, so each test calls it in a thread and reads the server's
search attributes from the test's loop.
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.testing import WorkflowEnvironment

from cli.main import main
from tests.support.processes import TEMPORAL, free_port

CONFLICT_NAMESPACE = "conflict"
"""Namespace in which JobStatus is registered as an Int, which the job workflows cannot use."""


@pytest.fixture(scope="module")
async def bare_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL,
        ip="127.0.0.1",
        ui=False,
        dev_server_extra_args=["--namespace", CONFLICT_NAMESPACE],
    )
    yield env
    await env.shutdown()


async def run_cac(capsys, *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def custom_attributes(env: WorkflowEnvironment, namespace: str) -> dict[str, int]:
    response = await env.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(response.custom_attributes)


async def test_ops_init_registers_missing_attributes_once(bare_env, capsys, monkeypatch):
    address = bare_env.client.service_client.config.target_host
    monkeypatch.setenv("CAC_TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("CAC_TEMPORAL_NAMESPACE", "default")
    before = await custom_attributes(bare_env, "default")

    first = await run_cac(capsys, "ops", "init")
    registered = await custom_attributes(bare_env, "default")
    second = await run_cac(capsys, "ops", "init")

    assert set(before) & {"JobStatus", "TenantId", "Provider", "GpuType", "CostMicros"} == set()
    assert first == (
        0,
        (
            f"registered 5 search attributes in namespace default at {address}:\n"
            "  CostMicros (INT)\n"
            "  GpuType (KEYWORD)\n"
            "  JobStatus (KEYWORD)\n"
            "  Provider (KEYWORD)\n"
            "  TenantId (KEYWORD)\n"
        ),
        "",
    )
    assert registered["JobStatus"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert registered["TenantId"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert registered["Provider"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert registered["GpuType"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert registered["CostMicros"] == IndexedValueType.INDEXED_VALUE_TYPE_INT
    assert second == (
        0,
        f"all job search attributes were already registered in namespace default at {address}\n",
        "",
    )


async def test_ops_init_rejects_attribute_of_other_type(bare_env, capsys, monkeypatch):
    await bare_env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=CONFLICT_NAMESPACE,
            search_attributes={"JobStatus": IndexedValueType.INDEXED_VALUE_TYPE_INT},
        )
    )
    monkeypatch.setenv("CAC_TEMPORAL_ADDRESS", bare_env.client.service_client.config.target_host)
    monkeypatch.setenv("CAC_TEMPORAL_NAMESPACE", CONFLICT_NAMESPACE)

    code, out, err = await run_cac(capsys, "ops", "init")

    assert (code, out) == (1, "")
    assert err == (
        "error: search attribute JobStatus exists in namespace conflict as INT, but job"
        " workflows need KEYWORD; remove or rename it\n"
    )
    assert "TenantId" not in await custom_attributes(bare_env, CONFLICT_NAMESPACE)


async def test_ops_init_without_temporal_exits_1(capsys, monkeypatch):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("CAC_TEMPORAL_ADDRESS", address)

    code, out, err = await run_cac(capsys, "ops", "init")

    assert (code, out) == (1, "")
    assert err.startswith(f"error: cannot reach Temporal at {address}: ")
    assert err.endswith("; start it, or set CAC_TEMPORAL_ADDRESS\n")
    assert "Connection refused" in err

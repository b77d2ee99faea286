"""LocalProvider staging a job's input in and its outputs out through a real object store.

Each staging test runs against the local directory store and against moto's S3 server.
"""

import asyncio
import json
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import (
    FINAL_INSTANCE_STATES,
    InstanceState,
    InstanceStatus,
    Offer,
    ProvisionRequest,
    TransientProviderError,
)
from providers.local import LocalProvider
from providers.local_staging import OUTPUTS_FILE
from storage import LocalDirectoryStore, ObjectStore, job_input_key, job_output_key
from storage.s3 import S3Store
from tests.support.moto_s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    moto_s3_server,
    new_bucket_store,
)
from tests.support.processes import free_port

PRICE_PER_HOUR_MICROS = 360_000

# Uppercases the input into result.txt, and writes a nested file, an empty directory and a
# symbolic link, which the archive must leave out.
STAGING_COMMAND = """
import os, pathlib
input_dir = pathlib.Path(os.environ['CAC_INPUT_DIR'])
output_dir = pathlib.Path(os.environ['CAC_OUTPUT_DIR'])
text = (input_dir / 'input').read_text()
(output_dir / 'result.txt').write_text(text.upper())
(output_dir / 'sub').mkdir()
(output_dir / 'sub' / 'nested.txt').write_text('nested')
(output_dir / 'empty').mkdir()
(output_dir / 'link').symlink_to(input_dir / 'input')
"""


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_server() as url:
        yield url


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return LocalDirectoryStore(
            tmp_path / "objects", public_base_url="http://127.0.0.1:9", secret=b"x" * 32
        )
    return new_bucket_store(request.getfixturevalue("s3_endpoint"))


def _provider(tmp_path: Path, store: ObjectStore | None) -> LocalProvider:
    return LocalProvider(
        work_root=tmp_path / "jobs",
        price_per_hour_micros=PRICE_PER_HOUR_MICROS,
        terminate_grace_seconds=2.0,
        store=store,
    )


def _request(token: str, code: str) -> ProvisionRequest:
    offer = Offer(
        provider="local",
        instance_type="local-process",
        region="local",
        gpu_type=None,
        gpu_count=0,
        spot=False,
        price_per_hour_micros=PRICE_PER_HOUR_MICROS,
        start_seconds=1,
    )
    return ProvisionRequest(
        client_token=token,
        job_id=f"job-{token}",
        offer=offer,
        image="python:3.11-slim",
        command=[sys.executable, "-c", code],
    )


async def _wait_for_final(provider: LocalProvider, instance_id: str) -> InstanceStatus:
    deadline = time.monotonic() + 15
    while True:
        status = await provider.status(instance_id, now=0)
        if status.state in FINAL_INSTANCE_STATES:
            return status
        assert time.monotonic() < deadline, f"instance still {status.state} after 15 s"
        await asyncio.sleep(0.05)


def _put_bytes(store: ObjectStore, key: str, data: bytes, scratch: Path) -> None:
    scratch.write_bytes(data)
    store.put_file(key, scratch)


def _output_archive(store: ObjectStore, job_id: str, scratch: Path) -> dict[str, bytes | None]:
    """Return the archive's members by name: file contents, or None for a directory."""
    assert store.get_file(job_output_key(job_id), scratch) is True
    members = {}
    with tarfile.open(scratch, "r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            members[member.name] = extracted.read() if extracted else None
    return members


async def test_local_job_reads_input_and_uploads_outputs(store, tmp_path):
    provider = _provider(tmp_path, store)
    request = _request("staged", STAGING_COMMAND)
    _put_bytes(store, job_input_key(request.job_id), b"hello input", tmp_path / "scratch")

    instance_id = await provider.provision(request)
    status = await _wait_for_final(provider, instance_id)

    assert status.state is InstanceState.SUCCEEDED, provider.log_path(instance_id).read_text()
    job_dir = tmp_path / "jobs" / instance_id
    assert (job_dir / "input" / "input").read_bytes() == b"hello input"
    assert _output_archive(store, request.job_id, tmp_path / "archive") == {
        "empty": None,
        "result.txt": b"HELLO INPUT",
        "sub": None,
        "sub/nested.txt": b"nested",
    }
    record = json.loads((job_dir / OUTPUTS_FILE).read_text())
    assert record["key"] == f"jobs/{request.job_id}/output.tar.gz"
    assert record["files"] == ["result.txt", "sub/nested.txt"]
    assert record["skipped"] == ["link"]
    assert record["bytes"] == (tmp_path / "archive").stat().st_size


async def test_local_job_without_input_sees_empty_input_dir(store, tmp_path):
    provider = _provider(tmp_path, store)
    code = "import os, sys; sys.exit(0 if os.listdir(os.environ['CAC_INPUT_DIR']) == [] else 3)"
    request = _request("no-input", code)

    instance_id = await provider.provision(request)
    status = await _wait_for_final(provider, instance_id)

    assert status.state is InstanceState.SUCCEEDED
    assert status.exit_code == 0
    assert _output_archive(store, request.job_id, tmp_path / "archive") == {}


async def test_terminated_local_job_uploads_partial_outputs(store, tmp_path):
    provider = _provider(tmp_path, store)
    code = (
        "import os, pathlib, time\n"
        "pathlib.Path(os.environ['CAC_OUTPUT_DIR'], 'checkpoint.txt').write_text('step 1')\n"
        "print('checkpointed', flush=True)\n"
        "time.sleep(60)\n"
    )
    request = _request("terminated", code)
    instance_id = await provider.provision(request)
    deadline = time.monotonic() + 10
    while "checkpointed" not in provider.log_path(instance_id).read_text():
        assert time.monotonic() < deadline, "the command did not write its checkpoint in 10 s"
        await asyncio.sleep(0.05)

    status = await provider.terminate(instance_id, now=0)

    assert status.state is InstanceState.TERMINATED
    assert _output_archive(store, request.job_id, tmp_path / "archive") == {
        "checkpoint.txt": b"step 1"
    }


async def test_outputs_are_uploaded_once(tmp_path):
    store = LocalDirectoryStore(
        tmp_path / "objects", public_base_url="http://127.0.0.1:9", secret=b"x" * 32
    )
    provider = _provider(tmp_path, store)
    code = "import os, pathlib; pathlib.Path(os.environ['CAC_OUTPUT_DIR'], 'a.txt').write_text('1')"
    request = _request("once", code)
    instance_id = await provider.provision(request)
    await _wait_for_final(provider, instance_id)
    job_dir = tmp_path / "jobs" / instance_id
    first_record = (job_dir / OUTPUTS_FILE).read_text()

    (job_dir / "output" / "a.txt").write_text("changed after the upload")
    again = await provider.status(instance_id, now=0)
    terminated = await provider.terminate(instance_id, now=0)

    assert again.state is InstanceState.SUCCEEDED
    assert terminated.state is InstanceState.SUCCEEDED
    assert (job_dir / OUTPUTS_FILE).read_text() == first_record
    assert _output_archive(store, request.job_id, tmp_path / "archive") == {"a.txt": b"1"}


async def test_failed_output_upload_is_retried(tmp_path):
    blocked_root = tmp_path / "blocked"
    blocked_root.write_text("a file where the store's directory should be")
    broken = LocalDirectoryStore(blocked_root, public_base_url="http://127.0.0.1:9", secret=b"x")
    provider = _provider(tmp_path, broken)
    code = "import os, pathlib; pathlib.Path(os.environ['CAC_OUTPUT_DIR'], 'a.txt').write_text('1')"
    request = _request("retried", code)
    instance_id = await provider.provision(request)
    job_dir = tmp_path / "jobs" / instance_id
    deadline = time.monotonic() + 10
    while not (job_dir / "exit.json").exists():
        assert time.monotonic() < deadline, "the command did not exit in 10 s"
        await asyncio.sleep(0.05)

    with pytest.raises(TransientProviderError) as raised:
        await provider.status(instance_id, now=0)
    recorded_after_failure = (job_dir / OUTPUTS_FILE).exists()
    provider.store = LocalDirectoryStore(
        tmp_path / "objects", public_base_url="http://127.0.0.1:9", secret=b"x"
    )
    status = await provider.status(instance_id, now=0)

    assert str(raised.value).startswith(
        f"could not upload the outputs of local instance {instance_id}: could not store object"
        f" jobs/{request.job_id}/output.tar.gz: "
    )
    assert recorded_after_failure is False
    assert status.state is InstanceState.SUCCEEDED
    assert _output_archive(provider.store, request.job_id, tmp_path / "archive") == {
        "a.txt": b"1"
    }


class _BlockingStore(LocalDirectoryStore):
    """A local store whose uploads wait until the test releases them."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, public_base_url="http://127.0.0.1:9", secret=b"x")
        self.uploading = threading.Event()
        self.release = threading.Event()

    def put_file(self, key: str, source: Path) -> None:
        self.uploading.set()
        assert self.release.wait(10), "the test did not release the upload"
        super().put_file(key, source)


async def test_status_during_output_upload_raises_transient(tmp_path):
    store = _BlockingStore(tmp_path / "objects")
    provider = _provider(tmp_path, store)
    request = _request("busy", "pass")
    instance_id = await provider.provision(request)
    job_dir = tmp_path / "jobs" / instance_id
    deadline = time.monotonic() + 10
    while not (job_dir / "exit.json").exists():
        assert time.monotonic() < deadline, "the command did not exit in 10 s"
        await asyncio.sleep(0.05)

    first = asyncio.create_task(provider.status(instance_id, now=0))
    assert await asyncio.to_thread(store.uploading.wait, 10)
    with pytest.raises(TransientProviderError) as raised:
        await provider.status(instance_id, now=0)
    store.release.set()
    status = await first

    assert str(raised.value) == (
        f"the outputs of local instance {instance_id} are still being uploaded; call again"
    )
    assert status.state is InstanceState.SUCCEEDED
    assert (job_dir / OUTPUTS_FILE).exists()


async def test_unreadable_input_store_fails_provision_transiently(tmp_path):
    unreachable = S3Store(
        "cac-test",
        region=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        path_style=True,
    )
    provider = _provider(tmp_path, unreachable)
    request = _request("unreadable", "pass")

    with pytest.raises(TransientProviderError) as raised:
        await provider.provision(request)

    assert str(raised.value).startswith(
        f"could not read the input of job {request.job_id}: could not download"
        f" s3://cac-test/jobs/{request.job_id}/input: "
    )
    assert not (tmp_path / "jobs" / "unreadable" / "launch.lock").exists()


async def test_local_job_without_store_stages_nothing(tmp_path):
    provider = _provider(tmp_path, None)
    code = "import os, pathlib; pathlib.Path(os.environ['CAC_OUTPUT_DIR'], 'a.txt').write_text('1')"
    instance_id = await provider.provision(_request("unstaged", code))

    status = await _wait_for_final(provider, instance_id)

    assert status.state is InstanceState.SUCCEEDED
    assert not (tmp_path / "jobs" / instance_id / OUTPUTS_FILE).exists()
    assert (tmp_path / "jobs" / instance_id / "output" / "a.txt").read_text() == "1"

"""One running system for every SDK test; see `tests.support.job_stack`."""

from collections.abc import Iterator

import pytest

from tests.support.job_stack import JobStack, running_job_stack


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Iterator[JobStack]:
    with running_job_stack(tmp_path_factory.mktemp("sdk")) as running:
        yield running

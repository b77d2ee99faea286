"""Saved histories of real runs must replay on the current JobWorkflow.

A failure here means a change would break jobs that are already running: guard the change with
`workflow.patched`, then record new histories with `python -m tests.workflows.record_histories`.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.job import JobWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_exist():
    assert len(HISTORIES) >= 4


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_saved_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())

    result = await Replayer(workflows=[JobWorkflow]).replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None

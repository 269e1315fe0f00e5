"""CLI runs whose process died: failed and their pool slots freed, on a real persistent instance."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from fastdraft_dag.assets.runs import (
    PROCESS_TAG,
    heal_dead_runs,
    pool_holders,
    process_alive,
    process_tags,
    wait_for_pools,
)

REPO = Path(__file__).resolve().parents[2]

# A run that claims the `hpu` slot and sleeps, as `fastdraft run` does while training.
HOLDER = textwrap.dedent(
    """
    import time
    import dagster as dg
    from fastdraft_dag.assets.runs import process_tags

    @dg.asset(pool="hpu")
    def busy() -> None:
        print("CLAIMED", flush=True)
        time.sleep(300)

    dg.materialize([busy], instance=dg.DagsterInstance.get(), tags=process_tags())
    """
)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")  # pools, limit 1
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


def _claimed(instance: dg.DagsterInstance) -> bool:
    return bool(instance.event_log_storage.get_concurrency_info("hpu").claimed_slots)


def test_a_killed_runs_slot_is_freed_and_the_run_failed(home):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE)
    with dg.DagsterInstance.get() as instance:
        try:
            deadline = time.monotonic() + 120
            while not _claimed(instance):
                assert proc.poll() is None and time.monotonic() < deadline, "no slot claimed"
                time.sleep(0.2)
            (holder,) = pool_holders(instance, "hpu")
            assert heal_dead_runs(instance, print) == []  # alive: left alone
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        (run,) = instance.get_runs()  # the holder's, the only run on this instance
        assert run.status == dg.DagsterRunStatus.STARTED and run.run_id in holder
        said: list[str] = []
        assert heal_dead_runs(instance, said.append) == [run.run_id]
        assert "marked failed" in said[0] and str(proc.pid) in said[0]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance, "hpu") == [] and not _claimed(instance)
        assert wait_for_pools(instance, ["hpu"], said.append, poll_seconds=0.1) < 5


def test_process_tag_names_this_process_and_a_dead_pid_is_dead():
    tag = process_tags()[PROCESS_TAG]
    assert process_alive(tag)
    host, pid, start = tag.rsplit(":", 2)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive(f"{host}:{dead.pid}:{start}")
    assert not process_alive(f"{host}:{pid}:1")  # same pid, other start time: a recycled pid

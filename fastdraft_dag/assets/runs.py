"""Runs started by the CLI, and the cleanup of those whose process died (no slot held by nobody).

The CLI executes in process, without the daemon whose run monitoring frees the pool slots of a
run that ended badly (`dagster.yaml`). So every run it starts carries PROCESS_TAG (host, pid,
process start time), and before launching, `heal_dead_runs` marks each unfinished run whose
process is gone as failed and frees its slots: a rerun after `kill -9` never waits on a slot
that nobody holds. `wait_for_pools` then waits, in this process (so Ctrl-C stops it), while a
live run holds a pool the selection needs, saying which run holds it and for how long.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable

import dagster as dg

PROCESS_TAG = "fastdraft/process"
UNFINISHED = (
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux /proc), None when there is no such pid.

    With the pid it identifies a process: a recycled pid has another start time.
    """
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one read of a proc file
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """Tags naming this process, for runs it executes in process."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"}


def process_alive(tag: str) -> bool:
    """Whether the process a PROCESS_TAG names is still running (another host's: assumed so)."""
    host, pid, start = tag.rsplit(":", 2)
    if host != socket.gethostname():
        return True
    now = _start_time(int(pid))
    return now is not None and (start == "?" or now in (start, "?"))


def _dead(run: dg.DagsterRun) -> bool:
    tag = run.tags.get(PROCESS_TAG)
    return tag is not None and not process_alive(tag)


def heal_dead_runs(instance: dg.DagsterInstance, log: Callable[[str], None]) -> list[str]:
    """Fail every unfinished CLI run whose process is gone and free its pool slots.

    Runs launched by the UI or the daemon have no PROCESS_TAG and are left to run monitoring.
    Returns the healed run ids.
    """
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=list(UNFINISHED)))
    healed = []
    for run in runs:
        if not _dead(run):
            continue
        message = f"its process ({run.tags[PROCESS_TAG]}) is gone (killed); slots freed by the CLI"
        instance.report_run_failed(run, message=message)
        _free_slots(instance, run.run_id)
        log(f"run {run.run_id} ({run.job_name}): marked failed, {message}")
        healed.append(run.run_id)
    return healed


def _free_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


def selection_pools(defs: dg.Definitions, keys: Iterable[dg.AssetKey]) -> set[str]:
    """The pools the steps of these assets claim."""
    graph = defs.resolve_asset_graph()
    pools: set[str] = set()
    for key in keys:
        pools |= set(graph.get(key).assets_def.node_def.pools)
    return pools


def pool_holders(instance: dg.DagsterInstance, pool: str) -> list[str]:
    """`run <id> (step <key>, <process>)` for each slot of `pool` that is taken, when it is full."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    info = storage.get_concurrency_info(pool)
    if info.limit is None or len(info.claimed_slots) < info.limit:
        return []
    holders = []
    for slot in info.claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        where = run.tags.get(PROCESS_TAG, "launched outside the CLI") if run else "unknown run"
        holders.append(f"run {slot.run_id} (step {slot.step_key}, {where})")
    return holders


def wait_for_pools(
    instance: dg.DagsterInstance,
    pools: Iterable[str],
    log: Callable[[str], None],
    poll_seconds: float = 2.0,
    say_every_seconds: float = 30.0,
) -> float:
    """Wait while a pool is full, naming its holders and the wait so far; returns seconds waited.

    The wait is a plain loop in this process, so Ctrl-C (KeyboardInterrupt) stops it. A holder
    that dies while we wait is healed on the next poll.
    """
    started, said = time.monotonic(), -say_every_seconds
    while True:
        heal_dead_runs(instance, log)
        busy = {
            pool: holders for pool in sorted(pools) if (holders := pool_holders(instance, pool))
        }
        waited = time.monotonic() - started
        if not busy:
            return waited
        if waited - said >= say_every_seconds:
            for pool, holders in busy.items():
                log(
                    f"pool {pool} is held by {', '.join(holders)}; waited {waited:.0f} s "
                    "(Ctrl-C to stop)"
                )
            said = waited
        time.sleep(poll_seconds)

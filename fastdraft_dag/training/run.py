"""Trainer entry point: `python -m fastdraft_dag.training.run --spec SPEC.json`.

Launched by Dagster Pipes (the HPU training resource), it sends log lines, evaluations and stage
summaries back to the run through `dagster_pipes`; launched by hand, it prints them. Either way it
exits non-zero with the error on stderr, so a failed training fails the materialization. Absolute
imports only: multi-device launchers (gaudi_spawn, torchrun) run this file as a script. Under
torchrun only rank 0 opens Pipes (see `run_spec`).

No orphans: when the launcher names itself in FASTDRAFT_PARENT_PID, the trainer asks the kernel
for SIGTERM when that parent dies (it checkpoints at the next step boundary and stops), and
holds `<checkpoints>/.trainer.lock` while it trains, so a rerun's trainer waits for a dying one
instead of racing it on the same checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastdraft_dag.core.locks import exclusive_lock
from fastdraft_dag.core.procs import die_with_parent as core_die_with_parent
from fastdraft_dag.core.settings import read_setting
from fastdraft_dag.training.spec import TrainSpec
from fastdraft_dag.training.trainer import train

PARENT_ENV = "FASTDRAFT_PARENT_PID"


def die_with_parent() -> bool:
    """Get SIGTERM (a checkpoint, then exit) when the launching process dies; False (exit) if
    it is already gone. Without this, `kill -9` of `fastdraft run` leaves the trainer running
    under PID 1, still writing checkpoints."""
    expected = read_setting(PARENT_ENV)
    return not expected or core_die_with_parent(expected, signal.SIGTERM)


def _checkpoint_lock(spec: TrainSpec) -> contextlib.AbstractContextManager:
    """Rank 0's lock on the checkpoints. Taken only for a spec that validated: a bad spec used
    to leave `<out_dir>/_checkpoints/.trainer.lock` wherever its (relative) out_dir pointed."""
    if int(os.environ.get("RANK", "0")) != 0:
        return contextlib.nullcontext()
    ckpt_dir = Path(spec.checkpoint_dir or Path(spec.out_dir) / "_checkpoints")
    return exclusive_lock(ckpt_dir / ".trainer.lock", _print_log)


def _print_log(message: str) -> None:
    print(message, flush=True)


def _print_report(payload: dict[str, Any]) -> None:
    print("report " + json.dumps(payload, default=str), flush=True)


def _in_pipes() -> bool:
    """True when a Pipes client launched us (it sets DAGSTER_PIPES_* variables)."""
    try:
        from dagster_pipes import PipesEnvVarParamsLoader
    except ImportError:  # a trainer environment without dagster-pipes still trains
        return False
    return PipesEnvVarParamsLoader().is_dagster_pipes_process()


def run_spec(spec: dict[str, Any] | TrainSpec) -> dict[str, Any]:
    """Train under Pipes when launched by it, otherwise with stdout logging.

    Under torchrun every rank inherits the Pipes variables, but only rank 0 opens the channel:
    one writer per session, and rank 0 is the one that logs and reports (telemetry.py).
    """
    if not _in_pipes() or int(os.environ.get("RANK", "0")) != 0:
        return train(spec, _print_log, _print_report)
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:

        def report(payload: dict[str, Any]) -> None:
            pipes.report_custom_message(json.loads(json.dumps(payload, default=str)))

        return train(spec, pipes.log.info, report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a FastDraft draft model from a JSON spec.")
    parser.add_argument("--spec", required=True, type=Path, help="path to the training spec JSON")
    args = parser.parse_args(argv)
    if not die_with_parent():
        print("training not started: the launching process is gone", file=sys.stderr)
        return 1
    try:
        spec = TrainSpec.from_dict(json.loads(args.spec.read_text()))  # refused before the lock
        with _checkpoint_lock(spec):
            metrics = run_spec(spec)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        print(f"training failed: {exc}", file=sys.stderr, flush=True)
        return 1
    _print_log(f"done: val_loss {metrics['val_loss']}, {metrics['tokens_per_s']:.0f} tok/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

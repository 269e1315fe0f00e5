"""Where training figures go: `train_log.jsonl`, TensorBoard event files, and the caller's log.

Only the main process writes. On resume, rows past the checkpoint's step (written by the run that
died) are dropped from the JSONL file and TensorBoard is told to purge them (`purge_step`), so the
curves show one consistent run. TensorBoard is optional: the Gaudi environment may lack it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

Log = Callable[[str], None]
Report = Callable[[dict], None]
TB_TAGS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu")


def _trim_jsonl(path: Path, keep_until: int) -> None:
    """Keep rows whose global step is <= keep_until (atomic rewrite)."""
    if not path.is_file():
        return
    rows = [r for r in path.read_text().split("\n") if r.strip()]
    kept = [r for r in rows if json.loads(r).get("global_step", 0) <= keep_until]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(r + "\n" for r in kept))
    os.replace(tmp, path)


def _summary_writer(log_dir: Path, purge_step: int | None, log: Log) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("tensorboard is not installed in the trainer's environment; no event files")
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


class Telemetry:
    """Per-step rows, evaluation rows and progress lines; silent on non-main ranks."""

    def __init__(
        self, out_dir: Path, main: bool, log: Log, report: Report, resume_step: int | None
    ) -> None:
        self.main, self._log, self._report = main, log, report
        self.tensorboard_dir = Path(out_dir) / "tensorboard"
        self._file = None
        self._tb = None
        if not main:
            return
        path = Path(out_dir) / "train_log.jsonl"
        if resume_step is None:
            path.unlink(missing_ok=True)
        else:
            _trim_jsonl(path, resume_step)
        self._file = open(path, "a")  # noqa: SIM115 (closed in close())
        purge = None if resume_step is None else resume_step + 1  # steps after the checkpoint
        self._tb = _summary_writer(self.tensorboard_dir, purge, log)

    def log(self, message: str) -> None:
        if self.main:
            self._log(message)

    def report(self, payload: dict[str, Any]) -> None:
        if self.main:
            self._report(payload)

    def row(self, row: dict[str, Any]) -> None:
        """One JSONL row; train and eval rows also go to TensorBoard under `<stage>/<tag>`."""
        if not self.main:
            return
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is None:
            return
        step, stage = row["global_step"], row["stage"]
        tags = TB_TAGS if row["kind"] == "train" else ("val_loss",)
        for tag in tags:
            if isinstance(row.get(tag), int | float):
                self._tb.add_scalar(f"{row['kind']}/{tag}", row[tag], step)
                self._tb.add_scalar(f"{stage}/{tag}", row[tag], step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()

"""Where training figures go: `train_log.jsonl`, TensorBoard event files, and the caller's log.

Only the main process writes. On resume, rows past the checkpoint's step (written by the run that
died) are dropped from the JSONL file and TensorBoard is told to purge them (`purge_step`), so the
curves show one consistent run. TensorBoard is optional: the Gaudi environment may lack it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastdraft_dag.core.files import write_text_atomic
from fastdraft_dag.core.jsonl import iter_jsonl, jsonl_text

Log = Callable[[str], None]
Report = Callable[[dict], None]
TB_TAGS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu")


def _trim_jsonl(path: Path, keep_until: int) -> None:
    """Keep rows whose global step is <= keep_until, as written (atomic rewrite). A line torn
    by the kill that ended the previous run is dropped: it belongs to no checkpointed step."""
    if not path.is_file():
        return
    kept = [
        line.raw.rstrip("\n") + "\n"
        for line in iter_jsonl(path)
        if line.problem is None and line.value.get("global_step", 0) <= keep_until
    ]
    write_text_atomic(path, "".join(kept), unique=False)


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
        self._file.write(jsonl_text([row], ensure_ascii=True))
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

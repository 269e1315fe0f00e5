"""The trainer's errors: each message says where (stage, step, file) and what to change."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot go on (bad spec, bad data, non-finite loss, out of memory)."""


class TrainingInterrupted(TrainingError):
    """Stopped by SIGTERM/SIGINT after writing a checkpoint; rerunning resumes from it."""

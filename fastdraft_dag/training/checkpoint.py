"""Checkpoints that make a killed run resume exactly where it stopped.

A checkpoint is a directory `step-<global step>` holding everything the next step depends on:
weights (`model.safetensors`), AdamW moments (`optimizer.pt`), the LR scheduler (`scheduler.pt`),
torch RNG states (`rng.pt`), and `state.json` (stage, step, the numpy Generator state, which is the
data position, and the running figures a stage summary needs). It is written under a temporary
name and renamed into place, then `LATEST` is replaced: a kill -9 at any moment leaves either the
old or the new checkpoint, never a half one. Tensors are read back with `weights_only=True`.

The directory lives inside the artifact's resumable partial directory
(`<root>/<asset>/<partition>/.<version>.partial/_checkpoints`), which a rematerialization of the
same version reuses, so a rerun after a crash finds its checkpoints there.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from fastdraft_dag.core.files import replace_dir, write_text_atomic
from fastdraft_dag.training.errors import TrainingError

LATEST = "LATEST"


@dataclass(frozen=True)
class Checkpoint:
    """A finished checkpoint directory and its state.json."""

    path: Path
    state: dict[str, Any]

    @property
    def global_step(self) -> int:
        return int(self.state["global_step"])


def rng_states() -> dict[str, torch.Tensor]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def save_checkpoint(
    root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    keep: int = 2,
) -> Checkpoint:
    """Write `step-<global_step>` atomically, point LATEST at it, keep the newest `keep`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{int(state['global_step']):08d}"
    tmp = root / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied embedding/head
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_states(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        # an existing one is a checkpoint of the same step from an earlier attempt
        final = replace_dir(tmp, root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(root / LATEST, name)
    _prune(root, keep)
    return Checkpoint(final, state)


def _prune(root: Path, keep: int) -> None:
    """Drop all but the newest `keep` checkpoints, and temporaries a killed writer left."""
    for stale in root.glob(".step-*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The checkpoint LATEST names, or None when there is none (a fresh run)."""
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / pointer.read_text().strip()
    state_file = path / "state.json"
    if not state_file.is_file():
        raise TrainingError(f"checkpoint {str(path)!r}: LATEST points at it but it is incomplete")
    return Checkpoint(path, json.loads(state_file.read_text()))


def load_weights(ckpt: Checkpoint, model: torch.nn.Module) -> None:
    load_model(model, str(ckpt.path / "model.safetensors"), device=str(_device_of(model)))


def load_training_state(ckpt: Checkpoint, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Optimizer moments, scheduler position and RNG states, loaded as plain tensors only."""
    optimizer.load_state_dict(_load(ckpt.path / "optimizer.pt"))
    scheduler.load_state_dict(_load(ckpt.path / "scheduler.pt"))
    set_rng_states(_load(ckpt.path / "rng.pt"))


def load_rng(ckpt: Checkpoint) -> None:
    set_rng_states(_load(ckpt.path / "rng.pt"))


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device

"""Pre-training a draft: initialize it for the target, train every recipe stage on the shards."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastdraft_dag.draft.config import derive_draft_config, init_draft
from fastdraft_dag.reporting.model_card import write_model_card
from fastdraft_dag.training.config import PretrainConfig
from fastdraft_dag.training.spec import TrainSpec, build_spec

# Runs a spec (in another process, on whatever hardware) and returns the trainer's metrics.
Trainer = Callable[[TrainSpec, Path], dict[str, Any]]


@dataclass(frozen=True)
class PretrainResult:
    metrics: dict[str, Any]


def check_draft(target_dir: Path, cfg: PretrainConfig) -> None:
    """An invalid draft size fails here, before any training."""
    derive_draft_config(target_dir, cfg.draft)


def pretrain_spec(
    cfg: PretrainConfig, init_dir: Path, out: Path, shards: Path, threads: int
) -> TrainSpec:
    data = [(s, {"kind": "packed", "root": str(shards), "mix": s.mix}) for s in cfg.stages]
    return build_spec(
        str(init_dir), str(out), data, seed=cfg.seed, dtype=cfg.dtype, threads=threads
    )


def pretrain_draft(
    target_dir: Path,
    target_name: str,
    shards: Path,
    shards_version: str,
    cfg: PretrainConfig,
    threads: int,
    out: Path,
    train: Trainer,
) -> PretrainResult:
    """Initialize the draft in `out/_init`, train it into `out`, write its card; scratch removed."""
    init_dir = out / "_init"
    sizes = init_draft(
        target_dir, cfg.draft, init_dir, seed=cfg.seed, init_embeddings=cfg.init_embeddings
    )
    metrics = train(pretrain_spec(cfg, init_dir, out, shards, threads), out / "_work")
    for scratch in (init_dir, out / "_work", out / "_checkpoints"):
        shutil.rmtree(scratch, ignore_errors=True)
    metrics = {**sizes, **metrics}
    write_model_card(
        out,
        "Pretrained FastDraft draft",
        target_name,
        metrics,
        {"tokenized_shards": shards_version},
    )
    return PretrainResult(metrics)

"""Settings of a training run as a recipe states them: stages, draft size, precision."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastdraft_dag.draft.sizes import DraftSize


@dataclass(frozen=True)
class StageConfig:
    name: str
    steps: int
    batch_size: int
    lr: float
    mix: dict[str, float] = field(default_factory=lambda: {"text": 1.0})
    min_lr: float | None = None
    warmup_steps: int = 20
    grad_accum: int = 1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 8


@dataclass(frozen=True)
class PretrainConfig:
    draft: DraftSize
    stages: tuple[StageConfig, ...]
    dtype: str = "bf16"  # the trainer falls back to fp32 where bf16 is not native
    seed: int = 0
    # "target": start the tied embedding from the target's (SVD). Lower loss at step 0; no gain
    # after 40 steps on the default shards (docs/architecture.md). "random": the usual init.
    init_embeddings: str = "target"

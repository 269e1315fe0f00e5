"""Settings of a training run as a recipe states them: stages, draft size, precision."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastdraft_dag.core.errors import ConfigError
from fastdraft_dag.draft.sizes import DraftSize

STAGE_LOSSES = ("ce", "fkl", "tvd")  # training/losses.py


def min_lr_of(lr: float, min_lr: float | None) -> float:
    """The learning rate at the end of the cosine decay: `min_lr`, or a tenth of `lr`."""
    return min_lr if min_lr is not None else lr / 10


@dataclass(frozen=True)
class StageConfig:
    name: str  # stage name: in logs, checkpoints and the model card
    steps: int  # optimizer steps
    batch_size: int  # rows per micro-batch (global batch = batch_size x grad_accum)
    lr: float  # peak learning rate (AdamW), reached after warmup_steps
    # fraction of rows per domain (text, code) drawn from the shards
    mix: dict[str, float] = field(default_factory=lambda: {"text": 1.0})
    min_lr: float | None = None  # learning rate at the end of the cosine decay; null = lr / 10
    warmup_steps: int = 20  # linear warmup steps
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    weight_decay: float = 0.1  # AdamW weight decay
    grad_clip: float = 1.0  # gradient norm clip
    eval_every: int = 100  # steps between validation passes; 0 = only at the end
    eval_batches: int = 8  # validation batches per pass
    # "ce": next-token cross-entropy on the labels. "fkl" / "tvd": distance to the target's
    # top-k logits (alignment only: its teacher pass computes them; training/losses.py).
    loss: str = "ce"

    def __post_init__(self) -> None:
        if self.loss not in STAGE_LOSSES:
            raise ConfigError(f"stage {self.name!r}: loss {self.loss!r}, expected {STAGE_LOSSES}")


@dataclass(frozen=True)
class PretrainConfig:
    draft: DraftSize  # shape of a random-init draft (init: random); see draft/sizes.py
    # pre-training stages in order (a random-init draft needs at least one)
    stages: tuple[StageConfig, ...]
    dtype: str = "bf16"  # the trainer falls back to fp32 where bf16 is not native
    seed: int = 0  # seed of init, data order and sampling in training
    # "target": start the tied embedding from the target's (SVD). Lower loss at step 0; no gain
    # after 40 steps on the default shards (docs/architecture.md). "random": the usual init.
    init_embeddings: str = "target"
    # "random": a DraftSize-shaped Llama trained from scratch (the paper's recipe). "target": the
    # target's embedding, `layers` of its decoder layers ("first" ones or "spread" over the
    # depth), its final norm and head; it starts from the target's own training.
    init: str = "random"
    layers: int = 2  # init target: how many of the target's decoder layers the draft keeps
    layer_choice: str = "first"  # init target: 'first' layers or 'spread' over the depth
    # Rows of the draft's LM head: the K most frequent tokens of the target's KD responses (a
    # trimmed head is cheaper to train and to run; coverage is reported). None: full vocabulary.
    draft_vocab: int | None = None
    freeze: tuple[str, ...] = ()  # "embed" and/or "head": left out of every training stage

    def __post_init__(self) -> None:
        if self.init not in ("random", "target"):
            raise ConfigError(f"pretrain.init {self.init!r}: expected 'random' or 'target'")
        if self.init == "random" and not self.stages:
            raise ConfigError("pretrain.stages: a randomly initialized draft needs training")
        if self.layer_choice not in ("first", "spread"):
            raise ConfigError(f"pretrain.layer_choice {self.layer_choice!r}: 'first' or 'spread'")
        if self.draft_vocab is not None and self.draft_vocab < 2:
            raise ConfigError(f"pretrain.draft_vocab {self.draft_vocab}: expected >= 2 or None")
        if set(self.freeze) - {"embed", "head"}:
            raise ConfigError(f"pretrain.freeze {list(self.freeze)}: 'embed' and/or 'head'")
        logit = [s.name for s in self.stages if s.loss != "ce"]
        if logit:
            raise ConfigError(
                f"pretrain.stages {logit}: loss must be 'ce'; logit losses need the target's "
                "logits, which only alignment computes (align.stage.loss)"
            )

"""`TrainSpec`: the one description of a training run, built here and nowhere else.

The assets (through the HPU training resource) write it as JSON; `python -m
fastdraft_dag.training.run` reads it back with `TrainSpec.from_dict`, which refuses unknown keys:
a typo ('warmup': 20) must never silently train with a default.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any, TypedDict

from fastdraft_dag.training.config import STAGE_LOSSES, StageConfig, min_lr_of
from fastdraft_dag.training.errors import TrainingError

# The recipe's defaults are the trainer's: a hand-written spec that leaves a setting out trains
# as a recipe stage that leaves it out would (tests/training/test_training.py checks it).
RECIPE = {f.name: f.default for f in fields(StageConfig) if f.default is not MISSING}


@dataclass(frozen=True)
class Stage:
    """One training stage as the trainer runs it; field names are the JSON keys. What is
    required and every default are StageConfig's (`mix` is in `data`)."""

    name: str
    data: dict
    steps: int
    batch_size: int  # global rows per micro-batch, split over the processes
    lr: float
    grad_accum: int = RECIPE["grad_accum"]
    min_lr: float | None = RECIPE["min_lr"]  # None: lr / 10 (set on construction)
    warmup_steps: int = RECIPE["warmup_steps"]
    weight_decay: float = RECIPE["weight_decay"]
    grad_clip: float = RECIPE["grad_clip"]
    eval_every: int = RECIPE["eval_every"]  # 0: evaluate only at the end of the stage
    eval_batches: int = RECIPE["eval_batches"]
    # "ce" on the labels, or a logit loss on the data's teacher top-k (losses.py)
    loss: str = RECIPE["loss"]

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_lr", min_lr_of(self.lr, self.min_lr))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Stage:
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise TrainingError(f"stage {raw.get('name')!r}: unknown keys {unknown}")
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [k for k in required if k not in raw]
        if missing:
            raise TrainingError(f"stage {raw.get('name')!r}: {missing} are required (of {raw!r})")
        stage = cls(**raw)
        if stage.steps <= 0 or stage.batch_size <= 0 or stage.grad_accum <= 0:
            raise TrainingError(f"stage {stage.name!r}: steps, batch_size, grad_accum must be > 0")
        if stage.loss not in STAGE_LOSSES:
            raise TrainingError(
                f"stage {stage.name!r}: loss {stage.loss!r}, expected {STAGE_LOSSES}"
            )
        return stage

    @classmethod
    def from_config(cls, cfg: StageConfig, data: dict[str, Any]) -> Stage:
        """A recipe stage on concrete data; `min_lr` defaults to a tenth of `lr`."""
        return cls(
            name=cfg.name,
            data=data,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            grad_accum=cfg.grad_accum,
            lr=cfg.lr,
            min_lr=cfg.min_lr,
            warmup_steps=cfg.warmup_steps,
            weight_decay=cfg.weight_decay,
            grad_clip=cfg.grad_clip,
            eval_every=cfg.eval_every,
            eval_batches=cfg.eval_batches,
            loss=cfg.loss,
        )


class StageSummary(TypedDict):
    """What one trained stage reports (`metrics["stages"][i]`): written by the loop and the Gaudi
    trainer, read by the assets' metadata and the model card."""

    name: str
    steps: int
    initial_val_loss: float | None  # before the stage's first step (the starting model's)
    first_train_loss: float
    train_loss: float  # mean over the stage's last tenth of steps
    val_loss: float | None
    val_loss_by_domain: dict[str, float]
    tokens: int
    tokens_per_s: float
    mfu: float
    train_seconds: float


@dataclass(frozen=True)
class TrainSpec:
    """What to train (`init_dir`, `stages`), where to write it, and how to run it."""

    init_dir: str
    out_dir: str
    stages: tuple[Stage, ...]
    seed: int = 0
    dtype: str = "bf16"
    # Run-time settings owned by the training resource; they do not change what is learned.
    backend: str = "auto"
    threads: int = 2
    checkpoint_every: int = 0  # steps; 0: only at stage ends and on SIGTERM/SIGINT
    checkpoint_dir: str = ""  # default: <out_dir>/_checkpoints
    keep_checkpoints: int = 2
    fused_loss: bool = True
    compile: bool | str = False  # torch.compile the decoder: true (inductor) or a backend name
    peak_flops: float = 0.0  # per device; 0: datasheet figure or measured (throughput.py)
    explode_factor: float = 3.0  # stop when loss > factor x ln(vocab); 0 disables
    zero_stage: int = 2  # DeepSpeed ZeRO-1/2 (hpu backend, more than one device; 0: plain DDP)
    # Parameters left out of training: "embed" (input embedding), "head" (LM head). A tied head
    # is the embedding: freezing either freezes both.
    freeze: tuple[str, ...] = ()
    # EAGLE-3 heads (init_dir holds one): the target that computes features and teacher logits
    # in the loop, and the training-time-test unroll (steps, per-step weight decay).
    teacher_dir: str = ""
    ttt_steps: int = 1
    ttt_decay: float = 0.8

    def __post_init__(self) -> None:
        if not self.init_dir or not self.out_dir or not self.stages:
            raise TrainingError("spec: 'init_dir', 'out_dir' and 'stages' are required")
        if self.dtype not in ("bf16", "fp32"):
            raise TrainingError(f"spec: dtype {self.dtype!r}, expected 'bf16' or 'fp32'")
        if set(self.freeze) - {"embed", "head"}:
            raise TrainingError(f"spec: freeze {list(self.freeze)}, expected 'embed' and/or 'head'")
        if self.zero_stage not in (0, 1, 2):
            raise TrainingError(f"spec: zero_stage {self.zero_stage!r}, expected 0, 1 or 2")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainSpec:
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise TrainingError(f"spec: unknown keys {unknown}")
        for key in ("init_dir", "out_dir", "stages"):
            if not raw.get(key):
                raise TrainingError(f"spec: {key!r} is required")
        stages = tuple(Stage.from_dict(dict(s)) for s in raw["stages"])
        return cls(**{**raw, "stages": stages, "freeze": tuple(raw.get("freeze", ()))})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_runtime(self, **settings: Any) -> TrainSpec:
        return replace(self, **settings)


def build_spec(
    init_dir: str,
    out_dir: str,
    stages: list[tuple[StageConfig, dict[str, Any]]],
    *,
    seed: int,
    dtype: str,
    threads: int = 2,
    freeze: tuple[str, ...] = (),
    **eagle3: Any,
) -> TrainSpec:
    """The run a recipe asks for: each recipe stage on its data, with the recipe's seed/dtype."""
    return TrainSpec(
        init_dir=str(init_dir),
        out_dir=str(out_dir),
        stages=tuple(Stage.from_config(cfg, data) for cfg, data in stages),
        seed=seed,
        dtype=dtype,
        threads=threads,
        freeze=tuple(freeze),
        **eagle3,
    )

"""A readable, nanoGPT-style training loop for FastDraft's three stages, on CPU or CUDA.

Stages (pre-training, continued pre-training, alignment) run in order on the same model; each gets
a fresh AdamW and its own warmup + cosine schedule. Data comes from packed token shards (loss on
every token) or an SFT `.npz` (loss only where labels != -100). All data is opened, and every
shard checksum verified, before the model is loaded: a corrupted shard costs seconds, not a run.

What makes it production-grade, and where each piece lives:
- data parallel over N processes (torchrun; DDP, gloo on CPU) with the *same* global batch, so the
  loss curve matches a single process (`distributed.py`, `data.py`);
- exact resume: checkpoints every `checkpoint_every` steps, at each stage end and on SIGTERM/SIGINT;
  a rerun after kill -9 continues from the last one (`checkpoint.py`);
- speed: fused chunked LM head + cross-entropy (`losses.py`), bf16 autocast where the hardware has
  it, fused AdamW, optional torch.compile of the decoder; tokens/s and MFU per step
  (`throughput.py`), TensorBoard + JSONL (`telemetry.py`);
- faults named: NaN or exploding loss stops before the update and names the step and the last good
  checkpoint; out of memory names the settings to lower.
The `hpu` backend takes another road (optimum-habana's GaudiTrainer, `gaudi.py`) behind the same
spec and entry point.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdraft_dag.training import checkpoint as ckpt
from fastdraft_dag.training.backends import bf16_native
from fastdraft_dag.training.data import (
    IGNORE,
    Batch,
    Data,
    count_tokens,
    generator_state,
    local_slice,
)
from fastdraft_dag.training.distributed import (
    StopRequest,
    World,
    all_sum,
    barrier,
    no_sync,
)
from fastdraft_dag.training.errors import TrainingError, TrainingInterrupted
from fastdraft_dag.training.losses import CausalLMLoss, batch_loss
from fastdraft_dag.training.spec import Stage, StageSummary, TrainSpec
from fastdraft_dag.training.telemetry import Log, Telemetry
from fastdraft_dag.training.throughput import flops_per_step, mfu

__all__ = ["Stage", "TrainingError", "TrainingInterrupted", "batch_loss", "lr_at", "run_stage"]


# ----------------------------------------------------------------------------- math


def lr_at(step: int, stage: Stage) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr` at the last step (0-based `step`)."""
    if step < stage.warmup_steps:
        return stage.lr * (step + 1) / (stage.warmup_steps + 1)
    decay_steps = stage.steps - 1 - stage.warmup_steps
    if decay_steps <= 0:
        return stage.lr
    progress = min(1.0, (step - stage.warmup_steps) / decay_steps)
    return stage.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (stage.lr - stage.min_lr)


def make_optimizer(model: torch.nn.Module, stage: Stage) -> torch.optim.Optimizer:
    """AdamW (fused kernel on CPU/CUDA); weight decay on matrices only, as in nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": stage.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = params[0].device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=stage.lr, betas=(0.9, 0.95), fused=fused)


def make_scheduler(optimizer: torch.optim.Optimizer, stage: Stage) -> Any:
    """`lr_at` as a LambdaLR, so the schedule's position is saved and restored with the rest."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, stage) / stage.lr)


def use_bf16(backend: str, dtype: str, log: Log) -> bool:
    """bf16 autocast only where the hardware has it; emulated bf16 is slower than fp32."""
    if dtype != "bf16":
        return False
    if torch.amp.is_autocast_available(backend) and bf16_native(backend):
        return True
    log(f"dtype bf16 requested but {backend} has no native bf16 here; training in fp32")
    return False


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if bf16:
        return torch.amp.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def is_oom(exc: BaseException) -> bool:
    """CUDA raises OutOfMemoryError; the CPU allocator a RuntimeError naming the failed alloc."""
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


# ----------------------------------------------------------------------------- run state


@dataclass
class Progress:
    """A stage's running figures; saved in every checkpoint so a resumed summary is whole."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    flops: float = 0.0
    train_seconds: float = 0.0
    initial_val_loss: float | None = None
    result: dict = field(default_factory=lambda: {"val_loss": None, "val_loss_by_domain": {}})


@dataclass(kw_only=True)
class Run:
    """What every stage shares: placement, precision, randomness, limits, and outputs."""

    backend: str
    device: torch.device
    world: World
    bf16: bool
    lm: CausalLMLoss
    wrapped: torch.nn.Module
    rng: np.random.Generator
    tel: Telemetry
    stop: StopRequest
    spec: TrainSpec
    ckpt_dir: Path
    fingerprint: str
    explode_at: float
    peak: float
    results: list[StageSummary] = field(default_factory=list)
    last_checkpoint: Path | None = None
    seq_len: int = 0

    def to_device(self, batch: Batch) -> Batch:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


@dataclass(frozen=True)
class StepResult:
    loss: float
    grad_norm: float
    tokens: int
    loss_tokens: int
    stop: bool


# ----------------------------------------------------------------------------- steps


@torch.no_grad()
def evaluate(run: Run, data: Data, stage: Stage) -> dict:
    """Token-weighted validation loss per domain, combined with the mix weights.

    Batches are split round-robin over the processes and the sums all-reduced, so N processes
    report what one would.
    """
    run.lm.eval()
    sums: dict[str, list[float]] = {d: [0.0, 0.0] for d in data.domains}
    for j, (domain, batch) in enumerate(data.val_batches(stage.batch_size, stage.eval_batches)):
        if j % run.world.size != run.world.rank:
            continue
        batch = run.to_device(batch)
        with _autocast(run.device, run.bf16):
            sums[domain][0] += float(run.lm(**batch))
        sums[domain][1] += float((batch["labels"][:, 1:] != IGNORE).sum())
    run.lm.train()
    flat = all_sum([x for d in data.domains for x in sums[d]], run.world, run.device)
    by_domain = {
        d: flat[2 * i] / flat[2 * i + 1] for i, d in enumerate(data.domains) if flat[2 * i + 1]
    }
    if not by_domain:
        return {"val_loss": None, "val_loss_by_domain": {}}
    weights = {d: data.domain_weight(d) for d in by_domain}
    val = sum(by_domain[d] * weights[d] for d in by_domain) / sum(weights.values())
    return {"val_loss": float(val), "val_loss_by_domain": by_domain}


def _accumulate(run: Run, stage: Stage, data: Data, plan: np.ndarray, normalizer: int) -> tuple:
    """Forward + backward over the step's micro-batches; returns (this rank's loss, tokens).

    Each micro-batch loss is this rank's summed CE over the *global* label count, times the
    world size because DDP averages gradients: the result is the gradient of one big batch.
    """
    local, tokens = 0.0, 0
    for k in range(stage.grad_accum):
        micro = plan[k * stage.batch_size : (k + 1) * stage.batch_size]
        batch = run.to_device(data.batch(local_slice(micro, run.world.rank, run.world.size)))
        with no_sync(run.wrapped, k == stage.grad_accum - 1):
            with _autocast(run.device, run.bf16):
                loss = run.wrapped(**batch) / normalizer
            (loss * run.world.size).backward()
        local += float(loss.detach())
        tokens += count_tokens(batch)
    return local, tokens


def _oom_error(run: Run, stage: Stage, step: int, seq_len: int) -> TrainingError:
    per = stage.batch_size // run.world.size
    return TrainingError(
        f"stage {stage.name!r} step {step + 1}: out of memory on {run.backend} with "
        f"batch_size={stage.batch_size} ({per} rows per process per micro-batch), "
        f"seq_len={seq_len}, grad_accum={stage.grad_accum}. Lower batch_size (raise grad_accum "
        "to keep the global batch) or seq_len."
    )


def _check_loss(run: Run, stage: Stage, step: int, loss: float, what: str = "loss") -> None:
    """Stop before a NaN/inf or exploding value reaches the weights; name the step."""
    bad = not math.isfinite(loss) or (what == "loss" and run.explode_at and loss > run.explode_at)
    if not bad:
        return
    kept = str(run.last_checkpoint) if run.last_checkpoint else "none yet (nothing to keep)"
    limit = f"; limit {run.explode_at:.2f} = explode_factor x ln(vocab)" if what == "loss" else ""
    raise TrainingError(
        f"stage {stage.name!r} step {step + 1}: {what} is {loss}{limit}; stopped before the "
        f"update. Last good checkpoint: {kept}. Lower lr, check the init weights or the data."
    )


def _train_step(
    run: Run, stage: Stage, data: Data, step: int, optimizer: Any, scheduler: Any
) -> StepResult:
    """One optimizer step over grad_accum micro-batches on every process."""
    plan = data.draw(run.rng, stage.batch_size * stage.grad_accum)
    normalizer = data.loss_tokens(plan)
    try:
        local, tokens = _accumulate(run, stage, data, plan, normalizer)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if is_oom(exc):
            raise _oom_error(run, stage, step, data.seq_len) from exc
        raise
    loss, tokens_all, stop = all_sum(
        [local, float(tokens), float(run.stop.signum is not None)], run.world, run.device
    )
    _check_loss(run, stage, step, loss)
    norm = float(torch.nn.utils.clip_grad_norm_(run.lm.parameters(), stage.grad_clip))
    _check_loss(run, stage, step, norm, what="gradient norm")
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss, norm, int(tokens_all), normalizer, stop > 0)


# ----------------------------------------------------------------------------- stages


def _stage_summary(stage: Stage, p: Progress, run: Run) -> StageSummary:
    window = p.losses[-max(1, stage.steps // 10) :]
    return {
        "name": stage.name,
        "steps": stage.steps,
        "initial_val_loss": p.initial_val_loss,
        "first_train_loss": p.losses[0],
        "train_loss": float(np.mean(window)),
        **p.result,
        "tokens": p.tokens,
        "tokens_per_s": p.tokens / p.train_seconds if p.train_seconds else 0.0,
        "mfu": mfu(p.flops, p.train_seconds, run.peak, run.world.size),
        "train_seconds": p.train_seconds,
    }


def _save_checkpoint(run: Run, i: int, stage: Stage, p: Progress, global_step: int, opt, sched):
    """Rank 0 writes; everyone waits, so no rank runs ahead of a checkpoint being written."""
    state = {
        "global_step": global_step,
        "stage_index": i,
        "stage": stage.name,
        "rng": generator_state(run.rng),
        "progress": asdict(p),
        "results": run.results,
        "fingerprint": run.fingerprint,
        "world_size": run.world.size,
    }
    if run.world.is_main:
        keep = run.spec.keep_checkpoints
        saved = ckpt.save_checkpoint(run.ckpt_dir, run.lm.model, opt, sched, state, keep)
        run.tel.log(f"checkpoint {saved.path.name} ({stage.name} step {p.step})")
    run.last_checkpoint = run.ckpt_dir / f"step-{global_step:08d}"
    barrier(run.world)


def _record_step(run: Run, stage: Stage, p: Progress, r: StepResult, seconds: float, g: int):
    """Fold a step into the stage's figures and write its row (JSONL + TensorBoard)."""
    flops = flops_per_step(run.lm.model.config, run.seq_len, r.tokens, r.loss_tokens)
    p.step += 1
    p.losses.append(r.loss)
    p.tokens += r.tokens
    p.flops += flops
    p.train_seconds += seconds
    run.tel.row(
        {
            "kind": "train",
            "stage": stage.name,
            "step": p.step,
            "global_step": g,
            "loss": r.loss,
            "lr": lr_at(p.step - 1, stage),
            "grad_norm": r.grad_norm,
            "tokens": r.tokens,
            "step_seconds": seconds,
            "tokens_per_s": r.tokens / seconds,
            "mfu": mfu(flops, seconds, run.peak, run.world.size),
            "t": time.perf_counter(),
        }
    )


def run_stage(run: Run, i: int, stage: Stage, data: Data, *, offset: int, p: Progress, opt, sched):
    """Train one stage from `p.step`; returns its summary (losses, tokens, throughput, MFU)."""
    every_log = max(1, stage.steps // 10)
    every_ckpt = run.spec.checkpoint_every
    run.seq_len = data.seq_len
    run.lm.objective = stage.loss
    run.tel.log(
        f"stage {stage.name}: steps {p.step + 1}..{stage.steps}, global batch "
        f"{stage.batch_size}x{stage.grad_accum} over {run.world.size} process(es)"
    )
    if p.step == 0:
        p.initial_val_loss = evaluate(run, data, stage)["val_loss"]
    first = p.step
    for step in range(p.step, stage.steps):
        t0 = time.perf_counter()
        r = _train_step(run, stage, data, step, opt, sched)
        _record_step(run, stage, p, r, time.perf_counter() - t0, offset + step + 1)
        last = p.step == stage.steps
        if step == first or p.step % every_log == 0 or last:
            run.tel.log(
                f"{stage.name} step {p.step}/{stage.steps} loss {r.loss:.4f} "
                f"lr {lr_at(step, stage):.2e} {p.tokens / p.train_seconds:.0f} tok/s"
            )
        if last or (stage.eval_every and p.step % stage.eval_every == 0):
            p.result = evaluate(run, data, stage)
            row = {"kind": "eval", "stage": stage.name, "step": p.step, **p.result}
            run.tel.row({**row, "global_step": offset + p.step})
            run.tel.report({"event": "eval", **row})
            run.tel.log(f"{stage.name} step {p.step} val_loss {p.result['val_loss']}")
        if last:
            run.results.append(_stage_summary(stage, p, run))
        if last or r.stop or (every_ckpt and (offset + p.step) % every_ckpt == 0):
            _save_checkpoint(run, i, stage, p, offset + p.step, opt, sched)
        if r.stop:
            raise TrainingInterrupted(
                f"stopped by signal {run.stop.signum} after stage {stage.name!r} step {p.step}; "
                f"checkpoint {run.last_checkpoint}. Rerun with the same spec to resume."
            )
    return run.results[-1]

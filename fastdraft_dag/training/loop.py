"""A readable, nanoGPT-style training loop for FastDraft's three stages.

Stages (pre-training, continued pre-training, alignment) run in order on the same model; each gets
a fresh AdamW and its own warmup + cosine schedule. Data comes either from packed token shards
(`shards.py`, loss on every token) or from an SFT `.npz` (loss only where labels != -100, i.e. on
the target's responses, never on prompts or padding). All data is opened, and every shard checksum
verified, before the model is loaded: a corrupted shard costs seconds, not a training run.

Single process for now. Seams for later work: `backends.step_marker` (Gaudi lazy mode),
`_autocast` (mixed precision per device), `_save` (what a checkpoint contains) and the WORLD_SIZE
guard in `train` (DDP / DeepSpeed will replace it).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fastdraft_dag.draft_config import copy_tokenizer_files
from fastdraft_dag.shards import load_split, read_index
from fastdraft_dag.training.backends import bf16_native, device_for, resolve_backend, step_marker

Log = Callable[[str], None]
Report = Callable[[dict], None]
Batch = dict[str, torch.Tensor]
IGNORE = -100
SPEC_DEFAULTS: dict[str, Any] = {"backend": "auto", "seed": 0, "threads": 2, "dtype": "bf16"}


class TrainingError(RuntimeError):
    """Training cannot go on (bad spec, bad data, non-finite loss); the message says where."""


@dataclass(frozen=True)
class Stage:
    """One training stage; field names are the spec's keys."""

    name: str
    data: dict
    steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 0  # 0: evaluate only at the end of the stage
    eval_batches: int = 4

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Stage:
        """Unknown keys are refused: a typo ('warmup': 20) must not silently train with defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise TrainingError(f"stage {raw.get('name')!r}: unknown keys {unknown}")
        if "name" not in raw or "data" not in raw:
            raise TrainingError(f"stage {raw!r}: 'name' and 'data' are required")
        stage = cls(**raw)
        if stage.steps <= 0 or stage.batch_size <= 0 or stage.grad_accum <= 0:
            raise TrainingError(f"stage {stage.name!r}: steps, batch_size, grad_accum must be > 0")
        return stage


# ----------------------------------------------------------------------------- data


class PackedData:
    """Fixed-length token sequences from shards; each sequence picks its domain by the mix."""

    def __init__(self, root: str, mix: dict[str, float]) -> None:
        self.domains = [d for d, w in mix.items() if w > 0]
        if not self.domains:
            raise TrainingError(f"packed data {root!r}: mix {mix} has no positive weight")
        weights = np.array([mix[d] for d in self.domains], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.index = read_index(Path(root))
        self.train = {d: load_split(Path(root), d, "train", verify=True) for d in self.domains}
        self.val = {d: load_split(Path(root), d, "validation", verify=True) for d in self.domains}
        for domain, arr in self.train.items():
            if len(arr) == 0:
                raise TrainingError(f"packed data {root!r}: domain {domain!r} has no train split")

    @property
    def seq_len(self) -> int:
        return int(self.index["seq_len"])

    @property
    def max_token_id(self) -> int:
        return int(self.index["vocab_size"]) - 1

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        picks = rng.choice(len(self.domains), size=batch_size, p=self.weights)
        rows = []
        for k in picks:
            arr = self.train[self.domains[k]]
            rows.append(arr[rng.integers(len(arr))])
        ids = torch.from_numpy(np.stack(rows).astype(np.int64))
        return {"input_ids": ids, "labels": ids}

    def val_batches(self, batch_size: int, n: int) -> Iterator[tuple[str, Batch]]:
        """The first n batches of each domain's validation split: the same every evaluation."""
        for domain in self.domains:
            arr = self.val[domain]
            for i in range(min(n, math.ceil(len(arr) / batch_size))):
                ids = torch.from_numpy(arr[i * batch_size : (i + 1) * batch_size].astype(np.int64))
                yield domain, {"input_ids": ids, "labels": ids}

    def domain_weight(self, domain: str) -> float:
        return float(self.weights[self.domains.index(domain)])


class SftData:
    """Prompt + target response rows, right-padded; labels are -100 on prompt and padding."""

    KEYS = ("input_ids", "labels", "attention_mask")

    def __init__(self, path: str) -> None:
        with np.load(path) as z:
            missing = [
                f"{s}_{k}" for s in ("train", "val") for k in self.KEYS if f"{s}_{k}" not in z
            ]
            if missing:
                raise TrainingError(f"sft data {path!r}: missing arrays {missing}")
            self.train = {k: np.asarray(z[f"train_{k}"], dtype=np.int64) for k in self.KEYS}
            self.val = {k: np.asarray(z[f"val_{k}"], dtype=np.int64) for k in self.KEYS}
        empty = np.flatnonzero((self.train["labels"] != IGNORE).sum(axis=1) == 0)
        if len(self.train["labels"]) == 0 or len(empty):
            raise TrainingError(
                f"sft data {path!r}: no rows, or rows {empty[:5]} with no loss tokens"
            )
        self.domains = ["sft"]

    @property
    def seq_len(self) -> int:
        return int(self.train["input_ids"].shape[1])

    @property
    def max_token_id(self) -> int:
        return int(max(self.train["input_ids"].max(), self.val["input_ids"].max(initial=0)))

    def _rows(self, split: dict[str, np.ndarray], idx: np.ndarray) -> Batch:
        return {k: torch.from_numpy(split[k][idx]) for k in self.KEYS}

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        return self._rows(self.train, rng.integers(len(self.train["input_ids"]), size=batch_size))

    def val_batches(self, batch_size: int, n: int) -> Iterator[tuple[str, Batch]]:
        total = len(self.val["input_ids"])
        for i in range(min(n, math.ceil(total / batch_size))):
            yield (
                "sft",
                self._rows(self.val, np.arange(i * batch_size, min(total, (i + 1) * batch_size))),
            )

    def domain_weight(self, domain: str) -> float:
        return 1.0


def open_data(spec: dict[str, Any]) -> PackedData | SftData:
    """Open (and checksum) a stage's data."""
    kind = spec.get("kind")
    if kind == "packed":
        return PackedData(spec["root"], spec["mix"])
    if kind == "sft":
        return SftData(spec["path"])
    raise TrainingError(f"data kind {kind!r}: expected 'packed' or 'sft'")


def count_tokens(batch: Batch) -> int:
    """Tokens the model processed (padding excluded)."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


# ----------------------------------------------------------------------------- math


def batch_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not -100.

    Computed here rather than by the model so the masking rule is visible and testable; logits
    are upcast to fp32 because a bf16 log-softmax over 49k+ classes loses precision.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    logits = logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE
    )


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
    """AdamW; weight decay on matrices only (not on norms), as in nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": stage.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=stage.lr, betas=(0.9, 0.95))


def use_bf16(backend: str, dtype: str, log: Log) -> bool:
    """bf16 autocast only where the hardware has it; emulated bf16 is slower than fp32."""
    if dtype != "bf16":
        return False
    if torch.amp.is_autocast_available(backend) and bf16_native(backend):
        return True
    log(f"dtype bf16 requested but {backend} has no native bf16 here; training in fp32")
    return False


def _autocast(backend: str, bf16: bool) -> contextlib.AbstractContextManager:
    if bf16:
        return torch.amp.autocast(backend, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- stages


@dataclass
class Run:
    """What every stage shares: device, precision, randomness, and where progress goes."""

    backend: str
    device: torch.device
    bf16: bool
    rng: np.random.Generator
    log: Log
    report: Report
    log_file: Any
    mark_step: Callable[[], None]

    def to_device(self, batch: Batch) -> Batch:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def write_row(self, row: dict[str, Any]) -> None:
        self.log_file.write(json.dumps(row) + "\n")
        self.log_file.flush()


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: PackedData | SftData, stage: Stage, run: Run) -> dict:
    """Mean validation loss per domain, combined with the mix weights; None when no val data."""
    model.eval()
    losses: dict[str, list[float]] = {}
    for domain, batch in data.val_batches(stage.batch_size, stage.eval_batches):
        with _autocast(run.backend, run.bf16):
            losses.setdefault(domain, []).append(batch_loss(model, run.to_device(batch)).item())
    model.train()
    by_domain = {d: float(np.mean(v)) for d, v in losses.items()}
    if not by_domain:
        return {"val_loss": None, "val_loss_by_domain": {}}
    weights = {d: data.domain_weight(d) for d in by_domain}
    val = sum(by_domain[d] * weights[d] for d in by_domain) / sum(weights.values())
    return {"val_loss": float(val), "val_loss_by_domain": by_domain}


def _train_step(model, optimizer, data, stage: Stage, step: int, run: Run) -> tuple[float, int]:
    """One optimizer step over grad_accum micro-batches; returns (mean loss, tokens)."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, stage)
    loss_sum, tokens = 0.0, 0
    for _ in range(stage.grad_accum):
        batch = run.to_device(data.sample(run.rng, stage.batch_size))
        with _autocast(run.backend, run.bf16):
            loss = batch_loss(model, batch)
        (loss / stage.grad_accum).backward()
        run.mark_step()
        loss_sum += loss.item() / stage.grad_accum
        tokens += count_tokens(batch)
    if not math.isfinite(loss_sum):
        raise TrainingError(
            f"stage {stage.name!r} step {step + 1}: loss is {loss_sum}; stopping "
            "(check the init weights, lower lr, or inspect the data)"
        )
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), stage.grad_clip)
    if not math.isfinite(float(norm)):
        raise TrainingError(f"stage {stage.name!r} step {step + 1}: gradient norm is {float(norm)}")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    run.mark_step()
    return loss_sum, tokens


def _log_progress(run: Run, stage: Stage, step: int, loss: float, tokens_per_s: float) -> None:
    lr = lr_at(step, stage)
    run.write_row({"kind": "train", "stage": stage.name, "step": step + 1, "loss": loss, "lr": lr,
                   "tokens_per_s": tokens_per_s})  # fmt: skip
    run.log(
        f"{stage.name} step {step + 1}/{stage.steps} loss {loss:.4f} lr {lr:.2e} "
        f"{tokens_per_s:.0f} tok/s"
    )


def run_stage(model: torch.nn.Module, stage: Stage, data: PackedData | SftData, run: Run) -> dict:
    """Train one stage; returns its summary (losses, tokens, throughput, time)."""
    optimizer = make_optimizer(model, stage)
    every = max(1, stage.steps // 10)
    losses: list[float] = []
    tokens, train_s, start = 0, 0.0, time.perf_counter()
    result: dict[str, Any] = {"val_loss": None, "val_loss_by_domain": {}}
    run.log(f"stage {stage.name}: {stage.steps} steps, batch {stage.batch_size}x{stage.grad_accum}")
    for step in range(stage.steps):
        t0 = time.perf_counter()
        loss, n = _train_step(model, optimizer, data, stage, step, run)
        train_s += time.perf_counter() - t0
        losses.append(loss)
        tokens += n
        last = step + 1 == stage.steps
        if step == 0 or (step + 1) % every == 0 or last:
            _log_progress(run, stage, step, loss, tokens / train_s)
        if last or (stage.eval_every and (step + 1) % stage.eval_every == 0):
            result = evaluate(model, data, stage, run)
            run.write_row({"kind": "eval", "stage": stage.name, "step": step + 1, **result})
            run.report({"event": "eval", "stage": stage.name, "step": step + 1, **result})
            run.log(f"{stage.name} step {step + 1} val_loss {result['val_loss']}")
    window = losses[-every:]
    return {
        "name": stage.name,
        "steps": stage.steps,
        "first_train_loss": losses[0],
        "train_loss": float(np.mean(window)),
        **result,
        "tokens": tokens,
        "tokens_per_s": tokens / train_s,
        "train_seconds": train_s,
        "wall_seconds": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------- entry


def parse_spec(spec: dict[str, Any]) -> tuple[dict[str, Any], list[Stage]]:
    """Fill top-level defaults and validate stages before anything is loaded."""
    spec = {**SPEC_DEFAULTS, **spec}
    for key in ("init_dir", "out_dir", "stages"):
        if not spec.get(key):
            raise TrainingError(f"spec: {key!r} is required")
    if spec["dtype"] not in ("bf16", "fp32"):
        raise TrainingError(f"spec: dtype {spec['dtype']!r}, expected 'bf16' or 'fp32'")
    return spec, [Stage.from_dict(s) for s in spec["stages"]]


def _check_fits(model: torch.nn.Module, stages: list[Stage], datas: list) -> None:
    """Token ids and sequence lengths the model cannot embed are refused before step 1."""
    vocab = model.get_input_embeddings().weight.shape[0]
    max_pos = getattr(model.config, "max_position_embeddings", None)
    for stage, data in zip(stages, datas, strict=True):
        if data.max_token_id >= vocab:
            raise TrainingError(
                f"stage {stage.name!r}: data token ids reach {data.max_token_id} but the model's "
                f"vocabulary has {vocab} entries (tokenizer mismatch?)"
            )
        if max_pos and data.seq_len > max_pos:
            raise TrainingError(
                f"stage {stage.name!r}: seq_len {data.seq_len} > max_position_embeddings {max_pos}"
            )


def _save(model: torch.nn.Module, spec: dict[str, Any], metrics: dict[str, Any]) -> None:
    """HF layout + the init dir's tokenizer; metrics.json last, so its presence means 'complete'."""
    out = Path(spec["out_dir"])
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    copy_tokenizer_files(Path(spec["init_dir"]), out)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out / "metrics.json")


def _load_model(spec: dict[str, Any], stages: list[Stage], datas: list) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(spec["init_dir"], dtype=torch.float32)
    _check_fits(model, stages, datas)
    return model


def _summary(
    results: list[dict], params: int, backend: str, spec: dict, bf16: bool
) -> dict[str, Any]:
    tokens = sum(r["tokens"] for r in results)
    return {
        "stages": results,
        "parameters": params,
        "backend": backend,
        "dtype": spec["dtype"],
        "bf16_autocast": bf16,
        "val_loss": results[-1]["val_loss"],
        "tokens": tokens,
        "tokens_per_s": tokens / sum(r["train_seconds"] for r in results),
    }


def train(spec: dict[str, Any], log: Log, report: Report) -> dict[str, Any]:
    """Run all stages of `spec` in order, save draft + metrics to `out_dir`, return metrics."""
    spec, stages = parse_spec(spec)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingError("multi-process training is not implemented yet; use num_devices=1")
    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(int(spec["seed"]))
    backend = resolve_backend(spec["backend"])
    datas = [open_data(s.data) for s in stages]  # verifies every shard before any compute
    model = _load_model(spec, stages, datas).to(device_for(backend)).train()
    out = Path(spec["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)
    params = sum(p.numel() for p in model.parameters())
    log(f"training {params:,} parameters on {backend} ({spec['dtype']}), {len(stages)} stages")
    rng = np.random.default_rng(int(spec["seed"]))
    with open(out / "train_log.jsonl", "w") as f:
        bf16 = use_bf16(backend, spec["dtype"], log)
        run = Run(backend, device_for(backend), bf16, rng, log, report, f, step_marker(backend))
        results = []
        for stage, data in zip(stages, datas, strict=True):
            results.append(run_stage(model, stage, data, run))
            report({"event": "stage", **results[-1]})
    metrics = _summary(results, params, backend, spec, run.bf16)
    _save(model, spec, metrics)
    report(
        {"event": "done", "val_loss": metrics["val_loss"], "tokens_per_s": metrics["tokens_per_s"]}
    )
    return metrics

"""Aligning a draft: SFT arrays from the KD rows (+ on-policy, + pre-training mix), train, gate.

The training itself runs through a `Trainer` callable (the HPU training resource in the graph, a
plain function in tests), so this module knows nothing of where it runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastdraft_dag.distill.config import AlignConfig
from fastdraft_dag.distill.gate import held_out_acceptance, held_out_rows, train_prompt_rows
from fastdraft_dag.distill.kd_rows import build_sft_arrays, read_rows, save_sft_npz
from fastdraft_dag.distill.on_policy import build_on_policy_arrays
from fastdraft_dag.distill.teacher_logits import teacher_topk, torch_target_logits
from fastdraft_dag.reporting.model_card import write_model_card
from fastdraft_dag.reporting.plots import loss_curve_plot, train_log_rows
from fastdraft_dag.training.spec import TrainSpec, build_spec

Trainer = Callable[[TrainSpec, Path], dict[str, Any]]
Log = Callable[[str], None]


@dataclass(frozen=True)
class AlignJob:
    """Everything alignment reads besides its inputs (config.schema.ASSET_SETTINGS)."""

    align: AlignConfig
    on_policy_max_new_tokens: int  # kd.max_new_tokens: on-policy answers are as long as KD ones
    on_policy_batch_size: int  # kd.batch_size
    seed: int  # pretrain.seed
    dtype: str  # pretrain.dtype
    threads: int
    freeze: tuple[str, ...] = ()  # pretrain.freeze: the same parts stay frozen in alignment


def data_parts(
    cfg: AlignConfig, kd_npz: Path, on_policy_npz: Path | None, shards: Path | None
) -> list[dict]:
    """The align stage's data: KD rows, on-policy rows and pre-training rows, by weight."""
    rest = 1.0 - cfg.pretrain_mix
    share = cfg.on_policy_fraction if on_policy_npz else 0.0
    parts = [
        {"name": "kd", "weight": rest * (1.0 - share), "kind": "sft", "path": str(kd_npz)},
        {"name": "on_policy", "weight": rest * share, "kind": "sft", "path": str(on_policy_npz)},
        {
            "name": "pretrain",
            "weight": cfg.pretrain_mix,
            "kind": "packed",
            "root": str(shards),
            "mix": cfg.stage.mix,
        },
    ]
    return [p for p in parts if p["weight"] > 0]


def data_spec(parts: list[dict]) -> dict:
    """One part is plain data; several are the trainer's `mixed` kind (one seeded plan)."""
    if len(parts) == 1:
        return {k: v for k, v in parts[0].items() if k not in ("name", "weight")}
    return {"kind": "mixed", "parts": parts}


def _on_policy(
    job: AlignJob, target_dir: Path, pretrained: Path, rows: list, arrays: dict, work: Path
) -> tuple[Path, dict]:
    cfg = job.align
    op_arrays, stats = build_on_policy_arrays(
        target_dir,
        pretrained,
        train_prompt_rows(rows, cfg.val_fraction),
        max_len=cfg.max_len,
        max_new_tokens=job.on_policy_max_new_tokens,
        temperature=cfg.on_policy_temperature,
        batch_size=job.on_policy_batch_size,
        seed=job.seed,
        threads=job.threads or None,
    )
    # Validate on the KD held-out rows: the target's own answers, what the gate uses.
    op_arrays |= {k: v for k, v in arrays.items() if k.startswith("val_")}
    save_sft_npz(op_arrays, work / "on_policy.npz")
    return work / "on_policy.npz", stats


def _teacher(job: AlignJob, target_dir: Path, arrays: dict, work: Path, log: Log) -> dict:
    """The target's top-k over the train rows, computed once: a resumed run reuses the file."""
    path = work / f"teacher_top{job.align.teacher_topk}.npz"
    if path.is_file():
        with np.load(path) as z:
            return dict(z)
    log(f"teacher pass: the target's top-{job.align.teacher_topk} over the KD answers")
    logits = torch_target_logits(target_dir, job.threads or None)
    teacher = teacher_topk(arrays, logits, job.align.teacher_topk)
    save_sft_npz(teacher, path)
    return teacher


def align_draft(
    target_dir: Path,
    target_name: str,
    *,
    pretrained: Path,
    kd_dir: Path,
    shards: Path | None,
    lineage: dict[str, str],
    job: AlignJob,
    out: Path,
    train: Trainer,
    log: Log = print,
) -> dict[str, Any]:
    """The aligned draft in `out` with its card; returns metrics incl. the gate's figures."""
    cfg = job.align
    rows = read_rows(kd_dir / "kd.jsonl")[0]
    arrays, data_stats = build_sft_arrays(
        rows, pretrained, cfg.max_len, cfg.val_fraction, drop_truncated=cfg.drop_truncated
    )
    work = out / "_work"
    work.mkdir(parents=True, exist_ok=True)
    if cfg.stage.loss != "ce":
        arrays |= _teacher(job, target_dir, arrays, work, log)
    save_sft_npz(arrays, work / "sft.npz")
    on_policy_npz, on_policy_stats = None, {}
    if cfg.on_policy:
        log("on-policy: the pretrained draft answers the KD train prompts")
        on_policy_npz, on_policy_stats = _on_policy(job, target_dir, pretrained, rows, arrays, work)
    parts = data_parts(cfg, work / "sft.npz", on_policy_npz, shards)
    spec = build_spec(
        str(pretrained),
        str(out),
        [(cfg.stage, data_spec(parts))],
        seed=job.seed,
        dtype=job.dtype,
        threads=job.threads,
        freeze=job.freeze,
    )
    metrics = train(spec, work)  # checkpoints: out/_checkpoints
    for scratch in (work, out / "_checkpoints"):
        shutil.rmtree(scratch, ignore_errors=True)
    log("gate: held-out greedy acceptance, pretrained vs aligned")
    figures = held_out_acceptance(
        target_dir,
        {"pretrained": pretrained, "aligned": out},
        held_out_rows(rows, cfg.val_fraction, drop_truncated=cfg.drop_truncated),
        cfg.max_len,
        threads=job.threads or None,
    )
    log_rows = train_log_rows(out / "train_log.jsonl")
    if log_rows:
        loss_curve_plot(log_rows, out / "loss_curve.png", f"alignment of {target_name}")
    metrics = {
        **metrics,
        "sft_data": data_stats,
        "on_policy": on_policy_stats,
        "data_parts": [{k: p[k] for k in ("name", "kind", "weight")} for p in parts],
        "gate": figures,
    }
    write_model_card(out, "Aligned FastDraft draft", target_name, metrics, lineage)
    return metrics

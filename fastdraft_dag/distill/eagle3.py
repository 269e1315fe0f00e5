"""The `eagle3_head` runner: an EAGLE-3 head trained on the target's own answers and features.

Data is the KD rows as SFT arrays (the same rows, split and truncation rule as the standalone
draft's alignment); the head's vocabulary is the target's most used response tokens (the same
ranking as a trimmed standalone draft); the target's features and teacher logits are computed
in the training loop (training/eagle3.py). After training, the head's chained acceptance is
measured on the held-out rows, teacher-forced on the target's features: a cheap estimate of
live EAGLE-3 decoding and the gate before it.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fastdraft_dag.distill.align import data_spec
from fastdraft_dag.distill.config import Eagle3Config
from fastdraft_dag.distill.gate import encode_held_out, held_out_rows
from fastdraft_dag.distill.kd_rows import build_sft_arrays, read_rows, save_sft_npz
from fastdraft_dag.draft.derived import load_draft
from fastdraft_dag.draft.eagle3 import (
    Eagle3Head,
    TargetTaps,
    choose_layers,
    head_layers,
    init_head,
    load_head,
    save_head,
    tap_record,
)
from fastdraft_dag.reporting.model_card import write_model_card
from fastdraft_dag.reporting.plots import loss_curve_plot, train_log_rows
from fastdraft_dag.training.pretrain import draft_vocabulary
from fastdraft_dag.training.spec import TrainSpec, build_spec

Trainer = Callable[[TrainSpec, Path], dict[str, Any]]
Log = Callable[[str], None]
CHAIN_KS = (1, 2, 3, 4, 5)  # chain lengths the offline estimate reports


@dataclass(frozen=True)
class Eagle3Job:
    """Everything the head's build reads besides its inputs (config.schema.ASSET_SETTINGS)."""

    eagle3: Eagle3Config
    threads: int


def initial_head(
    target_dir: Path,
    cfg: Eagle3Config,
    responses: Sequence[Sequence[int]],
    always_keep: Sequence[int],
    out: Path,
) -> dict[str, Any]:
    """The untrained head in `out`: the target's embedding/norm/head rows, its vocabulary ranked
    on the target's responses, its three taps chosen; returns the choices and coverage."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(target_dir)
    n_layers = int(config.num_hidden_layers)
    layers = choose_layers(n_layers, cfg.layers)
    kept, vocab_stats = draft_vocabulary(
        responses, cfg.draft_vocab, int(config.vocab_size), always_keep
    )
    head = init_head(target_dir, kept, seed=cfg.seed)
    save_head(head, out, target_dir, tap_record(layers, n_layers))
    trainable = sum(p.numel() for p in head.parameters() if p.requires_grad)
    return {
        "layers": layers,
        "target_layers": n_layers,
        "trainable_parameters": trainable,
        **vocab_stats,
    }


def train_head(
    *,
    target_dir: Path,
    target_name: str,
    kd_dir: Path,
    responses: Sequence[Sequence[int]],
    always_keep: Sequence[int],
    lineage: dict[str, str],
    job: Eagle3Job,
    out: Path,
    train: Trainer,
    log: Log = print,
    corpus: Corpus | None = None,
) -> dict[str, Any]:
    """The trained head in `out` with its card; returns metrics incl. the offline estimate.
    `corpus` mixes packed corpus rows into training: the target's features over text it did
    not have to generate (a measured option of the ablation, not yet a recipe setting)."""
    cfg = job.eagle3
    rows = read_rows(kd_dir / "kd.jsonl")[0]
    arrays, data_stats = build_sft_arrays(
        rows, target_dir, cfg.max_len, cfg.val_fraction, drop_truncated=cfg.drop_truncated
    )
    work, init = out / "_work", out / "_init"
    work.mkdir(parents=True, exist_ok=True)
    sizes = initial_head(target_dir, cfg, responses, always_keep, init)
    save_sft_npz(arrays, work / "sft.npz")
    parts = head_data(work / "sft.npz", corpus)
    spec = build_spec(
        str(init),
        str(out),
        [(cfg.stage, data_spec(parts))],
        seed=cfg.seed,
        dtype="fp32",
        threads=job.threads,
        teacher_dir=str(target_dir),
        ttt_steps=cfg.ttt_steps,
        ttt_decay=cfg.ttt_decay,
    )
    log(f"training an EAGLE-3 head on layers {sizes['layers']} of {sizes['target_layers']}")
    metrics = train(spec, work)
    for scratch in (work, init, out / "_checkpoints"):
        shutil.rmtree(scratch, ignore_errors=True)
    log("offline estimate: chained acceptance on the held-out KD rows")
    held = held_out_rows(rows, cfg.val_fraction, drop_truncated=cfg.drop_truncated)
    estimate = chain_acceptance(out, target_dir, held, cfg.max_len, job.threads)
    log_rows = train_log_rows(out / "train_log.jsonl")
    if log_rows:
        loss_curve_plot(log_rows, out / "loss_curve.png", f"EAGLE-3 head of {target_name}")
    metrics = {
        **sizes,
        **metrics,
        "sft_data": data_stats,
        "offline": estimate,
        "data_parts": [{k: p[k] for k in ("name", "kind", "weight")} for p in parts],
    }
    write_model_card(out, "FastDraft EAGLE-3 head", target_name, metrics, lineage)
    return metrics


@dataclass(frozen=True)
class Corpus:
    """Packed corpus rows (a tokenized_shards artifact) mixed into the head's training."""

    shards: Path
    share: float  # of training rows, in (0, 1)
    mix: dict[str, float]  # domain weights, as a stage's mix


def head_data(kd_npz: Path, corpus: Corpus | None) -> list[dict]:
    """The head's training rows: KD answers, plus packed corpus sequences when asked."""
    kd = {"name": "kd", "weight": 1.0, "kind": "sft", "path": str(kd_npz)}
    if corpus is None:
        return [kd]
    if not 0 < corpus.share < 1:
        raise ValueError(f"corpus share {corpus.share}: expected in (0, 1)")
    packed = {
        "name": "corpus",
        "weight": corpus.share,
        "kind": "packed",
        "root": str(corpus.shards),
        "mix": dict(corpus.mix),
    }
    return [{**kd, "weight": 1.0 - corpus.share}, packed]


def accepted_lengths(
    draft_next: torch.Tensor, target_next: torch.Tensor, ids: torch.Tensor, starts: Sequence[int]
) -> list[int]:
    """Greedy chain acceptance from each start t: drafts j = 0.. (step j at t proposes token
    t+2+j) are accepted while each equals the target's argmax at t+1+j and the token step j read
    (t+1+j, teacher-forced) is the one greedy decoding would have fed it (the target's argmax at
    t+j); stops at the end of the row. `draft_next` [K, T] in target ids, `target_next` [T]."""
    steps, width = draft_next.shape
    out = []
    for t in starts:
        n = 0
        while n < steps and t + 2 + n < width:
            if n and int(ids[t + 1 + n]) != int(target_next[t + n]):
                break
            if int(draft_next[n, t]) != int(target_next[t + 1 + n]):
                break
            n += 1
        out.append(n)
    return out


def summarize_chains(lengths: dict[str, list[int]], ks: Sequence[int] = CHAIN_KS) -> dict:
    """tau(k) = 1 + mean accepted drafts of a k-chain (the bonus token included), per task and
    pooled, and the per-step conditional acceptance alpha_j = P(L > j | L >= j)."""

    def figures(ls: list[int]) -> dict[str, Any]:
        arr = np.asarray(ls)
        alphas = [float((arr > j).sum() / max((arr >= j).sum(), 1)) for j in range(max(ks))]
        return {
            "chains": len(ls),
            **{f"tau_k{k}": float(1 + np.minimum(arr, k).mean()) for k in ks},
            "alpha_by_step": [round(a, 4) for a in alphas],
        }

    pooled = [n for ls in lengths.values() for n in ls]
    if not pooled:
        return {"chains": 0}
    return {**figures(pooled), "by_task": {t: figures(ls) for t, ls in sorted(lengths.items())}}


@torch.no_grad()
def chain_acceptance(
    head_dir: Path, target_dir: Path, rows: list[dict], max_len: int, threads: int | None
) -> dict[str, Any]:
    """Offline chained acceptance of the head in `head_dir` on `rows` (fp32 PyTorch)."""
    if threads:
        torch.set_num_threads(threads)
    head = load_head(head_dir)
    taps = TargetTaps(load_draft(Path(target_dir), trimmed=False), head_layers(head_dir) or [])
    lengths: dict[str, list[int]] = defaultdict(list)
    for task, ids, positions in tqdm(encode_held_out(rows, target_dir, max_len), desc="chains"):
        x = torch.tensor([ids])
        starts = [p - 2 for p in positions if p >= 2]
        if not starts:
            continue
        lengths[task] += _row_lengths(head, taps, x, starts)
    return summarize_chains(lengths)


def _row_lengths(head: Eagle3Head, taps: TargetTaps, x: torch.Tensor, starts: list[int]):
    feats, last = taps(x, None, final=True)
    target_next = taps.target.get_output_embeddings()(last)[0].argmax(-1)
    states = head.unroll(x, feats, max(CHAIN_KS))
    draft_next = torch.stack([head.kept_ids[head.logits(s)[0].argmax(-1)] for s in states])
    return accepted_lengths(draft_next, target_next, x[0], starts)

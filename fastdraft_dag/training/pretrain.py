"""Pre-training a draft: initialize it for the target, train every recipe stage on the shards.

Two inits: a DraftSize-shaped Llama from scratch (the paper's recipe), or a draft derived from
the target (its embedding, some decoder layers, final norm and head), optionally with a trimmed
head ranked on the target's own KD responses. A derived draft may have no pre-training stages:
it already carries the target's training, and alignment then distills it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastdraft_dag.draft.config import derive_draft_config, init_draft
from fastdraft_dag.draft.derived import init_derived, pick_layers
from fastdraft_dag.draft.vocab import coverage, rank_vocab, token_counts
from fastdraft_dag.reporting.model_card import write_model_card
from fastdraft_dag.training.config import PretrainConfig
from fastdraft_dag.training.spec import TrainSpec, build_spec

# Runs a spec (in another process, on whatever hardware) and returns the trainer's metrics.
Trainer = Callable[[TrainSpec, Path], dict[str, Any]]


@dataclass(frozen=True)
class PretrainResult:
    metrics: dict[str, Any]


def check_draft(target_dir: Path, cfg: PretrainConfig) -> None:
    """An invalid draft size or layer choice fails here, before any training."""
    if cfg.init == "random":
        derive_draft_config(target_dir, cfg.draft)
    else:
        from transformers import AutoConfig

        pick_layers(
            AutoConfig.from_pretrained(target_dir).num_hidden_layers, cfg.layers, cfg.layer_choice
        )


def pretrain_spec(
    cfg: PretrainConfig, init_dir: Path, out: Path, shards: Path, threads: int
) -> TrainSpec:
    data = [(s, {"kind": "packed", "root": str(shards), "mix": s.mix}) for s in cfg.stages]
    return build_spec(
        str(init_dir),
        str(out),
        data,
        seed=cfg.seed,
        dtype=cfg.dtype,
        threads=threads,
        freeze=cfg.freeze,
    )


def draft_vocabulary(
    responses: Sequence[Sequence[int]], k: int, vocab_size: int, always_keep: Sequence[int]
) -> tuple[list[int], dict[str, Any]]:
    """Top-k ids of the target's responses, and their coverage measured on held-out responses.

    Ranked on 4 of every 5 responses, coverage measured on the 5th (a trimmed draft can never
    propose a dropped token, so coverage caps its acceptance), then re-ranked on all of them.
    """
    held = [r for i, r in enumerate(responses) if i % 5 == 4]
    ranked = rank_vocab(
        token_counts(r for i, r in enumerate(responses) if i % 5 != 4), k, vocab_size, always_keep
    )
    stats = {"draft_vocab": k, "coverage_held_out": round(coverage(ranked, held), 4)}
    kept = rank_vocab(token_counts(responses), k, vocab_size, always_keep)
    stats["coverage_all"] = round(coverage(kept, responses), 4)
    return kept.tolist(), stats


def initialize(
    target_dir: Path,
    cfg: PretrainConfig,
    init_dir: Path,
    responses: Sequence[Sequence[int]] = (),
    always_keep: Sequence[int] = (),
) -> dict[str, Any]:
    """The draft before any training, in `init_dir`; returns its sizes (and vocabulary stats)."""
    if cfg.init == "random":
        return init_draft(
            target_dir, cfg.draft, init_dir, seed=cfg.seed, init_embeddings=cfg.init_embeddings
        )
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(target_dir)
    layers = pick_layers(config.num_hidden_layers, cfg.layers, cfg.layer_choice)
    keep, stats = None, {}
    if cfg.draft_vocab is not None:
        if not responses:
            raise ValueError("pretrain.draft_vocab needs the target's KD responses to rank tokens")
        keep, stats = draft_vocabulary(responses, cfg.draft_vocab, config.vocab_size, always_keep)
    return {"layers": layers, **stats, **init_derived(target_dir, layers, init_dir, keep)}


def pretrain_draft(
    target_dir: Path,
    target_name: str,
    *,
    shards: Path,
    lineage: dict[str, str],
    cfg: PretrainConfig,
    threads: int,
    out: Path,
    train: Trainer,
    responses: Sequence[Sequence[int]] = (),
    always_keep: Sequence[int] = (),
) -> PretrainResult:
    """Initialize the draft in `out/_init`, train it into `out`, write its card; scratch removed."""
    init_dir = out / "_init"
    sizes = initialize(target_dir, cfg, init_dir, responses, always_keep)
    if cfg.stages:
        metrics = train(pretrain_spec(cfg, init_dir, out, shards, threads), out / "_work")
    else:  # a derived draft used as it is: the init is the artifact
        for item in init_dir.iterdir():
            shutil.move(str(item), out / item.name)
        metrics = {"stages": [], "tokens": 0, "train_seconds": 0.0}
    for scratch in (init_dir, out / "_work", out / "_checkpoints"):
        shutil.rmtree(scratch, ignore_errors=True)
    metrics = {**sizes, **metrics, "init": cfg.init}
    write_model_card(out, "Pretrained FastDraft draft", target_name, metrics, lineage)
    return PretrainResult(metrics)

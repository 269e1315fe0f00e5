"""Offline acceptance of a draft against its target, by teacher forcing in PyTorch.

The target generates each continuation greedily once and scores it once; then every draft
variant (the PyTorch fp32 draft and each exported draft IR, fp16/int8/int4) scores the same
sequence in a single forward pass. Under greedy decoding the target's prefix is exactly what SD
would produce, so per-position argmax matches give alpha and an exact replay of SD steps (tau)
without running SD at all, and the softmaxes give sampled alpha. No Dagster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from fastdraft_dag.core.tokenizers import require_same_tokens
from fastdraft_dag.draft.derived import load_fp32_model
from fastdraft_dag.evaluation import metrics
from fastdraft_dag.openvino.genai import available_devices, check_device
from fastdraft_dag.openvino.ir_scoring import IRScorer, bytes_per_param, ir_model_file
from fastdraft_dag.prompts.render import encode_prompt

TORCH_FP32 = "torch-fp32"  # precision label of the PyTorch draft: the reference acceptance


@dataclass(frozen=True)
class OfflineJob:
    """What one offline evaluation scores, declared once: ``evaluate_offline``, the Core Ultra
    resource and the benchmark's ``BenchDevice`` all take this job, so a new setting is added
    in one place instead of three signatures kept in step by hand."""

    target_dir: Path
    draft_dir: Path
    _: KW_ONLY
    prompts: list[dict]
    max_new_tokens: int
    ks: list[int]
    threads: int = 2  # 0 keeps torch's default (the paper profile)
    draft_irs: Mapping[str, Path] = field(default_factory=dict)  # precision label -> IR dir
    target_precision: str = "fp32"  # the precision the target is deployed in (MBSU's r)


class OfflineRow(TypedDict):
    """One row of offline acceptance: a draft precision, a task family (or "all") and a k."""

    precision: str
    task: str
    k: int
    alpha_greedy: float
    alpha_sampled: float
    tau_iid: float
    tau_sim: float
    mbsu: float
    r: float
    acceptance_by_position: list[float]
    n_prompts: int
    n_tokens: int


def _generate(target: Any, ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation of the target (stops at EOS like a real decode would)."""
    import torch

    inp = torch.tensor([ids])
    out = target.generate(
        inp,
        attention_mask=torch.ones_like(inp),
        max_new_tokens=max_new_tokens,
        do_sample=False,
    )
    return out[0, len(ids) :].tolist()


def _score(model: Any, seq: list[int], n_prompt: int) -> tuple[np.ndarray, np.ndarray]:
    """Argmax and softmax at the positions that predict the continuation, one forward pass."""
    import torch

    logits = model(torch.tensor([seq])).logits[0, n_prompt - 1 : len(seq) - 1].float()
    return logits.argmax(-1).numpy(), torch.softmax(logits, -1).numpy()


Scorer = Callable[[list[int], int], tuple[np.ndarray, np.ndarray]]


def _torch_scorer(model: Any) -> Scorer:
    return lambda seq, n_prompt: _score(model, seq, n_prompt)


def score_variants(
    target: Any, variants: Mapping[str, Scorer], ids: list[int], max_new_tokens: int
) -> dict[str, dict]:
    """Per variant: greedy matches and min(p, q) overlaps along the target's one continuation.

    The target generates and scores once; each draft variant scores the same sequence, so the
    precisions are compared on identical positions.
    """
    import torch

    with torch.no_grad():
        cont = _generate(target, ids, max_new_tokens)
        if not cont:
            return {label: {"matches": [], "overlaps": []} for label in variants}
        seq = ids + cont
        t_arg, p = _score(target, seq, len(ids))
        out = {}
        for label, scorer in variants.items():
            d_arg, q = scorer(seq, len(ids))
            out[label] = {
                "matches": (t_arg == d_arg).tolist(),
                "overlaps": metrics.overlap_per_position(p, q).tolist(),
            }
    return out


def _rows_for(task: str, scored: list[dict], ks: list[int], r: float) -> list[dict]:
    """Aggregate one task family's scored prompts into one row per k (token-pooled alphas)."""
    match_seqs = [s["matches"] for s in scored]
    flat = [m for seq in match_seqs for m in seq]
    overlaps = [o for s in scored for o in s["overlaps"]]
    alpha_g = float(np.mean(flat)) if flat else 0.0
    alpha_s = float(np.mean(overlaps)) if overlaps else 0.0
    rows = []
    for k in ks:
        tau_sim = metrics.tau_simulated(match_seqs, k)
        rows.append(
            {
                "task": task,
                "k": k,
                "alpha_greedy": alpha_g,
                "alpha_sampled": alpha_s,
                "tau_iid": metrics.tau_iid(alpha_g, k),
                "tau_sim": tau_sim,
                "mbsu": metrics.mbsu(tau_sim, k, r),
                "r": r,
                "acceptance_by_position": metrics.acceptance_by_position(match_seqs, k),
                "n_prompts": len(scored),
                "n_tokens": len(flat),
            }
        )
    return rows


def rows_by_task(
    scored: Mapping[str, list[dict]], ks: list[int], r: float, precision: str
) -> list[OfflineRow]:
    """One row per task family and k, then the pooled task "all", all labelled ``precision``."""
    tasks = sorted(scored)
    rows = [row for task in tasks for row in _rows_for(task, scored[task], ks, r)]
    rows += _rows_for("all", [s for task in tasks for s in scored[task]], ks, r)
    return [OfflineRow(precision=precision, **row) for row in rows]


def draft_r(draft_dir: Path, target_dir: Path, precision: str, target_precision: str) -> float:
    """MBSU's r for a draft at ``precision`` against the target at its exported precision.

    r = draft parameters read per token x bytes per parameter of ``precision`` / the target's
    parameters read per token x bytes per parameter of ``target_precision`` (fp32 4, fp16 2,
    int8 1, int4 0.5). Nominal: group scales are not counted, nor the layers NNCF leaves in 8
    bits in an int4 IR (the embedding/LM head), so an int4 draft's r is a lower bound.
    """
    return metrics.param_bytes_ratio(
        draft_dir, target_dir, bytes_per_param(precision), bytes_per_param(target_precision)
    )


def evaluate_offline(job: OfflineJob, *, device: str = "CPU") -> list[OfflineRow]:
    """Greedy and sampled acceptance, tau and MBSU of a draft per precision, task family and k.

    The draft is scored as PyTorch fp32 (precision ``torch-fp32``) and as each IR in
    ``job.draft_irs`` (precision label -> IR directory, e.g. {"fp16": ..., "int4": ...}), all on the
    same target continuations. Rows carry precision, task, k, alpha_greedy, alpha_sampled,
    tau_iid (from alpha_greedy), tau_sim (exact greedy replay), mbsu (from tau_sim and r),
    r (see ``draft_r``: the draft's bytes read per token at that precision over the target's at
    ``target_precision``, the precision the target is deployed in), acceptance_by_position,
    n_prompts and n_tokens. The task "all" pools every prompt. The IRs compile on ``device``
    (the Core Ultra resource's), so quantized acceptance is scored where the draft will run; a
    device this machine lacks is refused, naming it, before any model loads.
    """
    import torch
    from transformers import AutoTokenizer

    if not job.prompts:
        raise ValueError("evaluate_offline: the prompt set is empty")
    target_dir, draft_dir, threads = Path(job.target_dir), Path(job.draft_dir), job.threads
    target_precision, draft_irs = job.target_precision, dict(job.draft_irs)
    for precision in (target_precision, *draft_irs):
        bytes_per_param(precision)  # an unknown precision fails before any model loads
    for ir in draft_irs.values():
        ir_model_file(ir)  # fail naming the path before any model is loaded
    if draft_irs:
        check_device(device, available_devices())
    require_same_tokens(draft_dir, target_dir, "draft")
    if threads:  # 0 keeps torch's default (the paper profile)
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    target = load_fp32_model(target_dir)
    variants: dict[str, Scorer] = {TORCH_FP32: _torch_scorer(load_fp32_model(draft_dir))}
    variants.update(
        {p: IRScorer(ir, device=device, threads=threads) for p, ir in draft_irs.items()}
    )
    scored: dict[str, dict[str, list[dict]]] = {p: defaultdict(list) for p in variants}
    for row in job.prompts:
        ids = encode_prompt(tokenizer, row)
        for label, result in score_variants(target, variants, ids, job.max_new_tokens).items():
            scored[label][row["task"]].append(result)
    rows: list[OfflineRow] = []
    for label in variants:
        r = draft_r(draft_dir, target_dir, label, target_precision)
        rows += rows_by_task(scored[label], job.ks, r, label)
    return rows

"""Offline acceptance of a draft against its target, by teacher forcing in PyTorch.

The target generates each continuation greedily once; then target and draft each score the whole
sequence in a single forward pass. Under greedy decoding the target's prefix is exactly what SD
would produce, so per-position argmax matches give alpha and an exact replay of SD steps (tau)
without running SD at all, and the softmaxes give sampled alpha. No OpenVINO, no Dagster.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from fastdraft_dag import metrics


def render_prompt(tokenizer: Any, row: dict) -> str:
    """The exact text fed to every model: chat rows through the chat template, others raw.

    Shared by the PyTorch and OpenVINO paths so both see identical prompts; openvino_genai must
    then be told not to apply its own chat template.
    """
    if not row.get("chat"):
        return row["prompt"]
    messages = [{"role": "user", "content": row["prompt"]}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer: Any, row: dict) -> list[int]:
    """Token ids of the rendered prompt.

    A chat template already writes its own leading special tokens, so they are not added again;
    raw text gets the tokenizer's usual BOS handling.
    """
    text = render_prompt(tokenizer, row)
    return list(tokenizer(text, add_special_tokens=not row.get("chat"))["input_ids"])


def load_fp32_model(model_dir: Path) -> Any:
    """fp32 eval-mode model: the reference precision for acceptance."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


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


def score_prompt(target: Any, draft: Any, ids: list[int], max_new_tokens: int) -> dict:
    """Per-position greedy matches and min(p, q) overlaps of one prompt's continuation."""
    import torch

    with torch.no_grad():
        cont = _generate(target, ids, max_new_tokens)
        if not cont:
            return {"matches": [], "overlaps": []}
        t_arg, p = _score(target, ids + cont, len(ids))
        d_arg, q = _score(draft, ids + cont, len(ids))
    return {
        "matches": (t_arg == d_arg).tolist(),
        "overlaps": metrics.overlap_per_position(p, q).tolist(),
    }


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


def evaluate_offline(
    target_dir: Path,
    draft_dir: Path,
    prompts: list[dict],
    max_new_tokens: int,
    ks: list[int],
    threads: int = 2,
) -> list[dict]:
    """Greedy and sampled acceptance, tau and MBSU of a draft, per task family and overall.

    Rows carry task, k, alpha_greedy, alpha_sampled, tau_iid (from alpha_greedy), tau_sim (exact
    greedy replay), mbsu (from tau_sim and r = param_bytes_ratio at equal precision),
    acceptance_by_position, n_prompts and n_tokens. The task "all" pools every prompt.
    """
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    target, draft = load_fp32_model(target_dir), load_fp32_model(draft_dir)
    by_task: dict[str, list[dict]] = defaultdict(list)
    for row in prompts:
        ids = prompt_ids(tokenizer, row)
        by_task[row["task"]].append(score_prompt(target, draft, ids, max_new_tokens))
    r = metrics.param_bytes_ratio(draft_dir, target_dir)
    rows = [row for task in sorted(by_task) for row in _rows_for(task, by_task[task], ks, r)]
    pooled = [s for task in sorted(by_task) for s in by_task[task]]
    return rows + _rows_for("all", pooled, ks, r)

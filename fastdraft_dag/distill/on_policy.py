"""On-policy distillation: the draft writes the answers, the target says what it would have said.

Sequence-level KD (kd.py) trains the draft on the *target's* sequences, but at decoding time the
draft conditions on its *own* previous proposals. On-policy distillation closes that gap: the
pretrained draft samples responses to the KD prompts, the target runs once over prompt + draft
response and labels every response position with its greedy argmax given the draft's prefix,
and the draft is trained with cross-entropy against those labels. This is the simplest form of
DistillSpec (Zhou et al., 2023): on-policy data, hard labels (forward KL to the target's one-hot
greedy choice, which is exactly what greedy acceptance rewards), generated once from the
pretrained draft rather than refreshed during training.

Output arrays have the layout of `kd.build_sft_arrays` (right-padded, labels -100 on prompt and
padding), so the trainer's SFT data kind reads them unchanged.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fastdraft_dag.distill.backends import pad_batch, torch_generation_config
from fastdraft_dag.distill.gate import greedy_next
from fastdraft_dag.distill.kd_rows import IGNORE, end_of_turn_ids
from fastdraft_dag.draft.vocab import load_vocab
from fastdraft_dag.prompts.render import encode_prompt


def _cut(new_ids: list[int], eos: list[int]) -> tuple[list[int], str]:
    """Generated ids up to and including the first end-of-turn id: the draft's own sequence."""
    for i, t in enumerate(new_ids):
        if t in eos:
            return new_ids[: i + 1], "eos"
    return new_ids, "length"


class _KeepOnly:
    """Logits processor: every token outside `kept` gets -inf (a trimmed head's vocabulary)."""

    def __init__(self, kept: Any) -> None:
        import torch

        self.kept = torch.as_tensor(kept)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        masked = scores.new_full(scores.shape, float("-inf"))
        masked[:, self.kept] = scores[:, self.kept]
        return masked


def draft_responses(
    draft: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float,
    eos: list[int],
    pad_id: int,
    kept_ids: Any = None,
) -> list[tuple[list[int], str]]:
    """(response ids, finish) per prompt, sampled from the draft in one left-padded batch.

    A trimmed draft (`kept_ids`) samples only the tokens its head keeps, as its IR does.
    """
    import torch
    from transformers import LogitsProcessorList

    config = torch_generation_config(max_new_tokens, temperature, eos, pad_id)
    ids, mask = pad_batch(prompts, pad_id, left=True)
    keep = LogitsProcessorList([_KeepOnly(kept_ids)] if kept_ids is not None else [])
    with torch.inference_mode():
        out = draft.generate(
            input_ids=ids, attention_mask=mask, generation_config=config, logits_processor=keep
        )
    return [_cut(row, eos) for row in out[:, ids.shape[1] :].tolist()]


def target_labels(target: Any, seqs: list[tuple[list[int], list[int]]], pad_id: int) -> list:
    """Target argmax for every response position of (prompt, response) pairs, one forward pass.

    Position t of a response is predicted from the prefix ending at t - 1, so the label of the
    token at t is the target's argmax at t - 1 (the prediction the draft is trained to make).
    """
    full = [p + r for p, r in seqs]
    ids, mask = pad_batch(full, pad_id, left=False)  # right padding: positions stay 0-based
    at = [list(range(len(p) - 1, len(p) + len(r) - 1)) for p, r in seqs]
    return greedy_next(target, ids, mask, at)


def _stack(rows: list[tuple[list[int], list[int]]], max_len: int, pad_id: int) -> dict:
    n = len(rows)
    arrays = {
        "input_ids": np.full((n, max_len), pad_id, dtype=np.int32),
        "labels": np.full((n, max_len), IGNORE, dtype=np.int64),
        "attention_mask": np.zeros((n, max_len), dtype=np.int8),
    }
    for i, (ids, labels) in enumerate(rows):
        arrays["input_ids"][i, : len(ids)] = ids
        arrays["labels"][i, : len(labels)] = labels
        arrays["attention_mask"][i, : len(ids)] = 1
    return arrays


def _unique_prompts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One prompt row per prompt id (a KD file may answer a prompt at several temperatures)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(r.get("prompt_id", r["id"]), r)
    return list(seen.values())


def build_on_policy_arrays(
    target_dir: Path,
    draft_dir: Path,
    rows: list[dict[str, Any]],
    *,
    max_len: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    threads: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """SFT arrays of draft-sampled responses labelled with the target's greedy choices.

    `rows` are KD rows (or prompt rows); only their prompts are used, so pass the *train* split:
    the held-out rows must stay unseen for the alignment gate. The `val_*` arrays are empty
    (the KD val split is the held-out set). Prompts of `max_len` tokens or more are skipped.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    eos = end_of_turn_ids(target_dir, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    draft = AutoModelForCausalLM.from_pretrained(draft_dir, dtype=torch.float32).eval()
    vocab = load_vocab(Path(draft_dir))
    kept = vocab[0] if vocab is not None else None
    target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
    torch.manual_seed(seed)
    counts: Counter = Counter()
    encoded = []
    for r in _unique_prompts(rows):
        ids = encode_prompt(tokenizer, r)
        if len(ids) >= max_len:
            counts["skipped_prompt_too_long"] += 1
        else:
            encoded.append(ids)
    encoded.sort(key=len)  # similar lengths per batch: little padding
    out: list[tuple[list[int], list[int]]] = []
    agree = positions = 0
    for i in range(0, len(encoded), batch_size):
        prompts = encoded[i : i + batch_size]
        new = min(max_new_tokens, max_len - len(prompts[-1]))  # the longest prompt must fit
        answers = draft_responses(draft, prompts, new, temperature, eos, pad_id, kept)
        pairs = [(p, r) for p, (r, _) in zip(prompts, answers, strict=True) if r]
        counts.update(f for _, f in answers)
        counts["empty_response"] += len(prompts) - len(pairs)
        if not pairs:
            continue
        for (p, r), lab in zip(pairs, target_labels(target, pairs, pad_id), strict=True):
            agree += sum(a == b for a, b in zip(r, lab, strict=True))
            positions += len(r)
            out.append((p + r, [IGNORE] * len(p) + lab))
    train = _stack(out, max_len, pad_id)
    empty = _stack([], max_len, pad_id)
    arrays = {f"train_{k}": v for k, v in train.items()} | {f"val_{k}": v for k, v in empty.items()}
    stats = {
        "rows": len(out),
        "response_tokens": positions,
        # How often the draft's own sample already was the target's greedy choice: a rough
        # pre-training acceptance figure on the draft's own distribution.
        "draft_sample_agreement": agree / positions if positions else None,
        "finish": {k: counts[k] for k in ("eos", "length") if counts[k]},
        "skipped_prompt_too_long": counts["skipped_prompt_too_long"],
        "empty_response": counts["empty_response"],
        "temperature": temperature,
        "seconds": time.perf_counter() - start,
    }
    return arrays, stats

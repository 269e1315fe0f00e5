"""The alignment gate: does fine-tuning on the target's answers make the draft agree with it more?

Greedy acceptance on the held-out KD rows (the `val` split of `kd.build_sft_arrays`, chosen by
`kd.is_val`): for every response position of a row, teacher-forced on prompt + the target's own
response, does the draft's argmax equal the target's argmax given the same prefix? That is the
greedy acceptance rate `alpha` of method.md measured on the alignment data itself, so it needs no
OpenVINO and no speculative decoding run, only one fp32 PyTorch forward pass per row per model.

The aligned draft must beat the pretrained draft it started from; if alignment made it worse
(a broken KD set, a learning rate that wrecked it), exporting and benchmarking it is wasted work.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

from fastdraft_dag.distill.kd_rows import IGNORE, encode_row, end_of_turn_ids, is_val
from fastdraft_dag.draft.derived import load_fp32_model


class TaskAcceptance(TypedDict):
    acceptance: float
    positions: int


class Acceptance(TypedDict):
    """One draft's greedy acceptance on the held-out rows: token-pooled and per task."""

    overall: float | None  # None when no response position was compared
    positions: int
    rows: int
    by_task: dict[str, TaskAcceptance]


# Draft name ("pretrained", "aligned") -> its acceptance: `metrics["gate"]` of aligned_draft.
GateFigures = dict[str, Acceptance]


class GateRow(TypedDict):
    task: str  # a task family, or "all" for the pooled figures
    pretrained: float
    aligned: float
    gain: float
    positions: int


class GateVerdict(NamedTuple):
    """The gate's answer: passed, a one-line description naming the figures, the table."""

    passed: bool
    description: str
    table: list[GateRow]


def held_out_rows(
    rows: list[dict[str, Any]],
    val_fraction: float,
    seed: int = 0,
    drop_truncated: bool = False,
) -> list[dict[str, Any]]:
    """The KD rows `build_sft_arrays` puts in its val split (same hash, same truncation rule)."""
    return [
        r
        for r in rows
        if is_val(r["id"], val_fraction, seed)
        and not (drop_truncated and r.get("finish") == "length")
    ]


def train_prompt_rows(
    rows: list[dict[str, Any]], val_fraction: float, seed: int = 0
) -> list[dict[str, Any]]:
    """Rows outside the val split whose prompt is not answered in it either: safe to learn from
    in any form (on-policy data included) without touching what the gate measures on."""
    val = held_out_rows(rows, val_fraction, seed)
    held = {r.get("prompt_id", r["id"]) for r in val}
    ids = {r["id"] for r in val}
    return [r for r in rows if r["id"] not in ids and r.get("prompt_id", r["id"]) not in held]


def encode_held_out(
    rows: list[dict[str, Any]], tokenizer_dir: Path, max_len: int
) -> list[tuple[str, list[int], list[int]]]:
    """(task, ids, response positions) per row, encoded exactly as the SFT arrays are."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos = end_of_turn_ids(tokenizer_dir, tokenizer)[0]
    out = []
    for r in rows:
        enc = encode_row(tokenizer, r, eos, max_len)
        if enc is None:
            continue
        ids, labels, _ = enc
        positions = [t for t, y in enumerate(labels) if y != IGNORE and t > 0]
        if positions:
            out.append((r["task"], ids, positions))
    return out


def greedy_next(
    model: Any, input_ids: Any, attention_mask: Any, at: list[list[int]]
) -> list[list[int]]:
    """The model's argmax next token at the given positions of each row (a right-padded batch).

    Only the decoder runs over the whole batch; the LM head runs on the requested positions
    alone, so no (rows x length x vocabulary) logits tensor is formed. A monotonic logit
    transform (softcap, scale) would not change an argmax, so the bare head is enough.
    """
    import torch

    with torch.inference_mode():
        hidden = model.get_decoder()(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        rows = torch.tensor([i for i, pos in enumerate(at) for _ in pos], dtype=torch.long)
        cols = torch.tensor([t for pos in at for t in pos], dtype=torch.long)
        picked = model.get_output_embeddings()(hidden[rows, cols]).argmax(-1).tolist()
    out, k = [], 0
    for pos in at:
        out.append(picked[k : k + len(pos)])
        k += len(pos)
    return out


def _argmax_at(model: Any, ids: list[int], positions: list[int]) -> list[int]:
    """The model's greedy choice for each response position t, i.e. its argmax at t - 1."""
    import torch

    x = torch.tensor([ids], dtype=torch.long)
    return greedy_next(model, x, torch.ones_like(x), [[t - 1 for t in positions]])[0]


def target_argmax(target: Any, encoded: list[tuple[str, list[int], list[int]]]) -> list[list[int]]:
    """The target's greedy choices for every row, computed once and shared by every draft."""
    return [_argmax_at(target, ids, pos) for _, ids, pos in encoded]


def acceptance(
    draft: Any, encoded: list[tuple[str, list[int], list[int]]], reference: list[list[int]]
) -> Acceptance:
    """Per-task and overall (token-pooled) fraction of positions where draft argmax == target's."""
    hits: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for (task, ids, pos), want in zip(encoded, reference, strict=True):
        got = _argmax_at(draft, ids, pos)
        hits[task] += sum(a == b for a, b in zip(got, want, strict=True))
        total[task] += len(pos)
    tasks = {t: {"acceptance": hits[t] / total[t], "positions": total[t]} for t in sorted(total)}
    n = sum(total.values())
    return {
        "overall": sum(hits.values()) / n if n else None,
        "positions": n,
        "rows": len(encoded),
        "by_task": tasks,
    }


def held_out_acceptance(
    target_dir: Path,
    draft_dirs: dict[str, Path],
    rows: list[dict[str, Any]],
    max_len: int,
    threads: int | None = None,
) -> GateFigures:
    """Greedy acceptance of each named draft against the target on `rows` (the held-out rows).

    The target runs once per row; each draft once per row. Everything is fp32 PyTorch, so the
    figure does not depend on a backend's precision choices.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    encoded = encode_held_out(rows, target_dir, max_len)
    reference = target_argmax(load_fp32_model(target_dir), encoded)
    return {
        name: acceptance(load_fp32_model(d), encoded, reference) for name, d in draft_dirs.items()
    }


def gate_table(figures: GateFigures) -> list[GateRow]:
    """Before/after per task family and overall: {pretrained, aligned} figures -> table rows."""
    before, after = figures["pretrained"], figures["aligned"]
    table: list[GateRow] = [
        {
            "task": task,
            "pretrained": before["by_task"][task]["acceptance"],
            "aligned": a["acceptance"],
            "gain": a["acceptance"] - before["by_task"][task]["acceptance"],
            "positions": a["positions"],
        }
        for task, a in after["by_task"].items()
    ]
    if after.get("positions"):
        table.append(
            {
                "task": "all",
                "pretrained": before["overall"],
                "aligned": after["overall"],
                "gain": after["overall"] - before["overall"],
                "positions": after["positions"],
            }
        )
    return table


def gate(aligned: Acceptance, pretrained: Acceptance, min_gain: float = 0.0) -> GateVerdict:
    """(passed, description, per-task table): aligned overall acceptance must exceed pretrained's
    by more than `min_gain`. Per-task gains are reported, not required: a task with a handful of
    held-out rows is too noisy to block on by itself.
    """
    if not aligned.get("positions"):
        return GateVerdict(
            False, "no held-out response positions to compare on: raise align.val_fraction", []
        )
    table = gate_table({"aligned": aligned, "pretrained": pretrained})
    gain = table[-1]["gain"]
    passed = gain > min_gain
    per_task = "; ".join(
        f"{r['task']} {r['gain']:+.3f} ({r['pretrained']:.3f} -> {r['aligned']:.3f})"
        for r in table[:-1]
    )
    head = (
        f"aligned draft beats the pretrained draft by {gain:+.3f} greedy acceptance"
        if passed
        else f"aligned draft falls short: gain {gain:+.3f}, needs more than {min_gain:+.3f} "
        f"(short by {min_gain - gain:.3f})"
    )
    desc = (
        f"{head} on {aligned['positions']} held-out response positions "
        f"({pretrained['overall']:.3f} -> {aligned['overall']:.3f}); per task: {per_task}"
    )
    return GateVerdict(passed, desc, table)

"""Sequence-level knowledge distillation: the target answers the KD prompts, the draft learns them.

This module holds what generation and training share: the prompt encoding (`prompts.render`),
the JSONL row files, and `build_sft_arrays`, which turns rows into fixed-length token arrays with
the loss masked to the response, using exactly the same prompt encoding as generation, so the
draft is trained on the context the target really saw. Generation itself is `kd_generation`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from fastdraft_dag.core.files import atomic_path
from fastdraft_dag.core.jsonl import read_jsonl, write_jsonl_atomic
from fastdraft_dag.prompts.render import encode_prompt

IGNORE = -100


class KDRow(TypedDict):
    """One line of `kd.jsonl`: the target's answer to one prompt at one temperature.

    Written by generation (`generation._make_row`), read by SFT arrays, on-policy data, the gate,
    the EAGLE-3 head and the asset's quality checks. `read_rows` checks `id` and `response` only.
    """

    id: str  # row_id(prompt id, temperature, seed)
    prompt_id: str
    task: str
    prompt: str
    chat: bool
    temperature: float
    response: str
    prompt_tokens: int
    response_tokens: int
    finish: str  # "eos" or "length" (cut at max_new_tokens, kept with kd.keep_truncated)


class DroppedRow(TypedDict):
    """One line of `kd.dropped.jsonl`: a row decided as dropped for good, so a resume skips it."""

    id: str
    prompt_id: str
    reason: str


def end_of_turn_ids(model_dir: Path, tokenizer: Any) -> list[int]:
    """Ids that end a response, from generation_config.json first (what `generate` stops on).

    GGUF-converted tokenizers can carry a wrong `eos_token` (SmolLM2's says `<|im_start|>`), while
    the generation config names `<|im_end|>`; the generation config is the one the target obeys.
    """
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:
        eos = None
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if not ids:
        raise ValueError(f"{str(model_dir)!r}: no eos token in generation config or tokenizer")
    return ids


def tokenizer_roundtrips(tokenizer: Any) -> bool:
    """A broken tokenizer (e.g. spaces mapped to unk) silently ruins hours of KD generation."""
    text = "Hello world, this is a test.\n    x = 1"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=True).strip() == text.strip()


# ---------------------------------------------------------------- JSONL rows


def row_id(prompt_id: str, temperature: float, seed: int) -> str:
    """Stable KD row id: one prompt can be answered at several temperatures and seeds."""
    return f"{prompt_id}/t{temperature}/s{seed}"


def _read_jsonl(path: Path, required: tuple[str, ...]) -> tuple[list[dict[str, Any]], int]:
    """Rows holding `required`, and the count of other lines (torn, not JSON, not a row)."""
    if not Path(path).is_file():
        return [], 0
    objs, bad = read_jsonl(path, on_bad="count")
    rows = [o for o in objs if isinstance(o, dict) and all(k in o for k in required)]
    return rows, bad + len(objs) - len(rows)


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Valid rows of a KD JSONL file, each id once (the first), and the number of unreadable or
    repeated lines (a crash mid-write; two writers before builds were locked)."""
    rows, bad = _read_jsonl(path, ("id", "response"))
    unique = _first_per_id(rows)
    return unique, bad + len(rows) - len(unique)


def _first_per_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            out.append(row)
    return out


def existing_ids(path: Path, require_response: bool = True) -> set[str]:
    """Ids already on disk; a torn last line and repeated ids are cut first, so appends stay
    valid JSONL and the file never holds an id twice."""
    rows, bad = _read_jsonl(path, ("id", "response") if require_response else ("id",))
    first = _first_per_id(rows)
    if bad or len(first) < len(rows):  # a torn line or a repeated id: rewrite the file clean
        write_jsonl_atomic(path, first, unique=False)
    return {r["id"] for r in first}


# ---------------------------------------------------------------- SFT arrays


def is_val(rid: str, val_fraction: float, seed: int) -> bool:
    """Deterministic split by row-id hash: stable when rows are added or reordered."""
    digest = hashlib.sha1(f"{seed}:{rid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def encode_row(
    tokenizer: Any, row: dict[str, Any], eos: int, max_len: int
) -> tuple[list[int], list[int], str] | None:
    """(ids, labels, status) of one KD row, or None when even the prompt does not fit.

    Labels are IGNORE on the prompt; the response and its end-of-turn id are learned. A row with
    `finish="length"` gets no end-of-turn id: the target never ended it.
    """
    p = encode_prompt(tokenizer, row)
    r = list(tokenizer(row["response"], add_special_tokens=False)["input_ids"])
    if row.get("finish") == "eos":
        r.append(eos)
    if len(p) >= max_len:
        return None
    status = "truncated" if len(p) + len(r) > max_len else "ok"
    r = r[: max_len - len(p)]
    return p + r, [IGNORE] * len(p) + r, status


def _stack(seqs: list[tuple[list[int], list[int]]], max_len: int, pad_id: int) -> dict[str, Any]:
    """Right-padded arrays; padding is masked out of attention and loss."""
    n = len(seqs)
    ids = np.full((n, max_len), pad_id, dtype=np.int32)
    labels = np.full((n, max_len), IGNORE, dtype=np.int64)
    mask = np.zeros((n, max_len), dtype=np.int8)
    for i, (x, y) in enumerate(seqs):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = x, y, 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def build_sft_arrays(
    rows: list[dict[str, Any]],
    tokenizer_dir: Path,
    max_len: int,
    val_fraction: float,
    drop_truncated: bool = True,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tokenized KD rows as `train_*` / `val_*` arrays (input_ids int32, labels int64, mask int8).

    `drop_truncated` drops rows whose generation hit max_new_tokens (an unfinished answer teaches
    the draft nothing about stopping); rows longer than `max_len` are cut and counted.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos = end_of_turn_ids(tokenizer_dir, tokenizer)[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    splits: dict[str, list[tuple[list[int], list[int]]]] = {"train": [], "val": []}
    counts: Counter = Counter()
    for row in rows:
        if drop_truncated and row.get("finish") == "length":
            counts["dropped_unfinished"] += 1
            continue
        enc = encode_row(tokenizer, row, eos, max_len)
        if enc is None:
            counts["dropped_prompt_too_long"] += 1
            continue
        counts[enc[2]] += 1
        splits["val" if is_val(row["id"], val_fraction, seed) else "train"].append(enc[:2])
    arrays: dict[str, np.ndarray] = {}
    for name, seqs in splits.items():
        for key, arr in _stack(seqs, max_len, pad_id).items():
            arrays[f"{name}_{key}"] = arr
    stats = {
        "rows_in": len(rows),
        "train": len(splits["train"]),
        "val": len(splits["val"]),
        "kept_whole": counts["ok"],
        "truncated_to_max_len": counts["truncated"],
        "dropped_unfinished": counts["dropped_unfinished"],
        "dropped_prompt_too_long": counts["dropped_prompt_too_long"],
        "response_tokens_train": int((arrays["train_labels"] != IGNORE).sum()),
        "max_len": max_len,
        "eos_id": eos,
        "pad_id": pad_id,
    }
    return arrays, stats


def save_sft_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write atomically: a crash never leaves a half-written npz for the trainer to load."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, unique=False) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # a file object: np.savez appends no `.npz` to its name


def response_token_ids(rows: list[dict[str, Any]], tokenizer: Any) -> list[list[int]]:
    """The target's responses as token ids (what a trimmed draft vocabulary is ranked on)."""
    texts = [r["response"] for r in rows]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

"""Sequence-level knowledge distillation: the target answers the KD prompts, the draft learns them.

`generate_responses` runs the target over prompt rows and appends JSONL rows (resumable: a crashed
or extended run never regenerates what is already on disk). `build_sft_arrays` turns those rows
into fixed-length token arrays with the loss masked to the response, using exactly the same
prompt encoding as generation, so the draft is trained on the context the target really saw.

The generation backend is PyTorch `generate`; `Backend`-style alternatives (OpenVINO GenAI) and
temperature mixes plug in at `_generate_batch` / the caller, not here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
FALLBACK_TEMPLATE = "User: {prompt}\nAssistant:"
IGNORE = -100


# ---------------------------------------------------------------- prompt encoding (shared)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer: Any, row: dict[str, Any]) -> str:
    """The exact text the target is conditioned on: chat-templated, fallback, or raw."""
    if not row.get("chat", True):
        return row["prompt"]
    if has_chat_template(tokenizer):
        messages = [{"role": "user", "content": row["prompt"]}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return FALLBACK_TEMPLATE.format(prompt=row["prompt"])


def encode_prompt(tokenizer: Any, row: dict[str, Any]) -> list[int]:
    """Prompt token ids; the template already carries its special tokens, so none are added."""
    return list(tokenizer(prompt_text(tokenizer, row), add_special_tokens=False)["input_ids"])


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


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Valid rows of a KD JSONL file and the number of unreadable lines (a crash mid-write)."""
    rows, bad = [], 0
    if not Path(path).is_file():
        return rows, bad
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(obj, dict) and "id" in obj and "response" in obj:
            rows.append(obj)
        else:
            bad += 1
    return rows, bad


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    os.replace(tmp, path)


def _existing_ids(out_path: Path) -> set[str]:
    """Ids already on disk; a torn last line is cut off first so appends stay valid JSONL."""
    rows, bad = read_rows(out_path)
    if bad:
        _write_rows(out_path, rows)
    return {r["id"] for r in rows}


# ---------------------------------------------------------------- generation


def cpu_has_fast_bf16() -> bool:
    """bf16 only pays off with AMX / AVX512-BF16; on AVX2-only CPUs it is ~1.7-3x slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str) -> str:
    """`auto` picks bf16 where the CPU has native bf16 matmuls, fp32 elsewhere."""
    if dtype == "auto":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {sorted(DTYPES)} or 'auto'")
    return dtype


def load_target(target_dir: Path, dtype: str, threads: int) -> tuple[Any, Any]:
    """Model in eval mode at the requested precision, and its tokenizer set up for left padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = resolve_dtype(dtype)
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(target_dir, dtype=getattr(torch, DTYPES[dtype]))
    return model.eval(), tokenizer


def _batches(
    encoded: list[tuple[dict[str, Any], list[int]]], batch_size: int
) -> Iterator[list[tuple[dict[str, Any], list[int]]]]:
    """Length-sorted batches: similar lengths waste little compute on padding."""
    ordered = sorted(encoded, key=lambda e: (len(e[1]), e[0]["id"]))
    for i in range(0, len(ordered), batch_size):
        yield ordered[i : i + batch_size]


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, mask


def _generation_config(max_new_tokens: int, temperature: float, eos: list[int], pad_id: int):
    """A fresh config: the target's own sampling defaults (top_p, ...) must not leak in."""
    from transformers import GenerationConfig

    sample = temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else None,
        top_p=None,
        top_k=None,
        eos_token_id=eos,
        pad_token_id=pad_id,
    )


def _generate_batch(model: Any, seqs: list[list[int]], config: Any, pad_id: int) -> list[list[int]]:
    """New token ids per sequence (padding included); the seam for other backends."""
    import torch

    ids, mask = _left_pad(seqs, pad_id)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    return out[:, ids.shape[1] :].tolist()


def _finish(new_ids: list[int], eos: list[int]) -> tuple[list[int], str]:
    """Response ids up to (not including) the first end-of-turn id, and why generation stopped."""
    for i, t in enumerate(new_ids):
        if t in eos:
            return new_ids[:i], "eos"
    return new_ids, "length"


def _make_row(
    prompt: dict[str, Any], rid: str, n_prompt: int, resp: list[int], finish: str, text: str
) -> dict[str, Any]:
    return {
        "id": rid,
        "prompt_id": prompt["id"],
        "task": prompt["task"],
        "prompt": prompt["prompt"],
        "chat": bool(prompt.get("chat", True)),
        "response": text,
        "prompt_tokens": n_prompt,
        "response_tokens": len(resp),
        "finish": finish,
    }


def _pending(
    prompts: list[dict[str, Any]], done: set[str], temperature: float, seed: int, drops: Counter
) -> list[dict[str, Any]]:
    """Prompts still to answer: not on disk yet, each id once."""
    todo, seen = [], set()
    for p in prompts:
        rid = row_id(p["id"], temperature, seed)
        if rid in done:
            continue
        if rid in seen:
            drops["duplicate_prompt_id"] += 1
            continue
        seen.add(rid)
        todo.append(p)
    return todo


@dataclass
class _Run:
    """One generation run: the loaded target, its settings and the running tallies."""

    model: Any
    tokenizer: Any
    config: Any
    eos: list[int]
    pad_id: int
    temperature: float
    seed: int
    drops: Counter = field(default_factory=Counter)
    finish: Counter = field(default_factory=Counter)
    tokens: int = 0
    seconds: float = 0.0

    def answer(self, batch: list[tuple[dict[str, Any], list[int]]]) -> list[dict[str, Any]]:
        """Generate one batch and turn it into rows; empty responses are counted, not returned."""
        t0 = time.perf_counter()
        new = _generate_batch(self.model, [ids for _, ids in batch], self.config, self.pad_id)
        self.seconds += time.perf_counter() - t0
        rows = []
        for (p, ids), new_ids in zip(batch, new, strict=True):
            resp, finish = _finish(new_ids, self.eos)
            self.tokens += len(resp) + (finish == "eos")
            text = self.tokenizer.decode(resp, skip_special_tokens=True)
            if not text.strip():
                self.drops["empty_response"] += 1
                continue
            self.finish[finish] += 1
            rid = row_id(p["id"], self.temperature, self.seed)
            rows.append(_make_row(p, rid, len(ids), resp, finish, text))
        return rows


def _start_run(
    target_dir: Path, max_new_tokens: int, temperature: float, seed: int, threads: int, dtype: str
) -> _Run:
    import torch

    model, tokenizer = load_target(target_dir, dtype, threads)
    eos = end_of_turn_ids(target_dir, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    config = _generation_config(max_new_tokens, temperature, eos, pad_id)
    torch.manual_seed(seed)
    return _Run(model, tokenizer, config, eos, pad_id, temperature, seed)


def generate_responses(
    target_dir: Path,
    prompts: list[dict[str, Any]],
    out_path: Path,
    max_new_tokens: int,
    batch_size: int = 8,
    temperature: float = 0.0,
    seed: int = 0,
    threads: int = 2,
    dtype: str = "bf16",
    progress: bool = True,
) -> dict[str, Any]:
    """Let the target answer `prompts`; append rows to `out_path` (JSONL) and return stats.

    Greedy when `temperature == 0`, else pure temperature sampling. Resumable: prompts whose row id
    is already in `out_path` are skipped and the file is appended to, flushed after every batch.
    Rows that hit `max_new_tokens` are kept with `finish="length"`; empty responses are dropped.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = _existing_ids(out_path)
    dup: Counter = Counter()
    todo = _pending(prompts, done, temperature, seed, dup)
    run = _start_run(target_dir, max_new_tokens, temperature, seed, threads, dtype)
    run.drops.update(dup)
    roundtrip = tokenizer_roundtrips(run.tokenizer)
    if not roundtrip:
        warnings.warn(f"{target_dir}: tokenizer does not round-trip plain text", stacklevel=2)
    encoded = [(p, encode_prompt(run.tokenizer, p)) for p in todo]
    written = 0
    bar = tqdm(total=len(encoded), desc="kd generate", unit="prompt", disable=not progress)
    with open(out_path, "a", encoding="utf-8") as f:
        for batch in _batches(encoded, batch_size):
            rows = run.answer(batch)
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            f.flush()
            written += len(rows)
            bar.update(len(batch))
    bar.close()
    return {
        "rows": written,
        "rows_in_file": len(done) + written,
        "skipped_existing": len(prompts) - len(todo) - dup["duplicate_prompt_id"],
        "drops": dict(run.drops),
        "finish": dict(run.finish),
        "generated_tokens": run.tokens,
        "tokens_per_s": run.tokens / run.seconds if run.seconds else 0.0,
        "generate_seconds": run.seconds,
        "seconds": time.perf_counter() - start,
        "template": "chat" if has_chat_template(run.tokenizer) else "fallback",
        "tokenizer_roundtrip": roundtrip,
        "dtype": resolve_dtype(dtype),
        "batch_size": batch_size,
        "temperature": temperature,
    }


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
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)

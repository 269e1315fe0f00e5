"""The target answers the KD prompts: batched, at a mix of temperatures, resumable, drops counted.

Rows go to a JSONL file, flushed after every chunk. Rows that are dropped for good (an empty
answer, an answer cut at `max_new_tokens`) are written to a sidecar `*.dropped.jsonl`, so a
resumed run skips them too: a killed run continues without regenerating anything it decided and
without duplicates. Rows that fail with an exception are counted but not recorded, so a rerun
tries them again.

Each prompt is answered at one temperature, chosen from the configured mix by a hash of its id
(stable when prompts are added); the row id carries the temperature and seed.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastdraft_dag.core.drops import Drops
from fastdraft_dag.core.jsonl import append_jsonl, read_jsonl
from fastdraft_dag.distill.backends import (
    BACKENDS,
    Backend,
    OpenVINOBackend,
    Request,
    TorchBackend,
    load_target,
    request_seed,
    resolve_dtype,
)
from fastdraft_dag.distill.kd_rows import (
    DroppedRow,
    KDRow,
    end_of_turn_ids,
    existing_ids,
    row_id,
    tokenizer_roundtrips,
)
from fastdraft_dag.openvino.export import export_ir
from fastdraft_dag.prompts.render import encode_prompt, template_name

CHUNK_BATCHES = 4  # a chunk (one flush, one resume point) holds this many batches of prompts


def dropped_path(out_path: Path) -> Path:
    """`kd.jsonl` -> `kd.dropped.jsonl`: ids decided as dropped, with the reason."""
    return Path(out_path).with_suffix(".dropped.jsonl")


def parse_temperatures(mix: float | Mapping[float, float] | Any) -> list[tuple[float, float]]:
    """A temperature, or {temperature: weight} / ((temperature, weight), ...), as normalized pairs."""
    if isinstance(mix, int | float):
        mix = {float(mix): 1.0}
    pairs = sorted((float(t), float(w)) for t, w in dict(mix).items())
    if not pairs or any(t < 0 or w < 0 for t, w in pairs) or sum(w for _, w in pairs) <= 0:
        raise ValueError(f"kd temperatures {mix!r}: need temperatures >= 0 with positive weights")
    total = sum(w for _, w in pairs)
    return [(t, w / total) for t, w in pairs if w > 0]


def assign_temperature(prompt_id: str, mix: list[tuple[float, float]], seed: int) -> float:
    """The temperature this prompt is answered at: a hash of its id walks the mix's weights."""
    u = int.from_bytes(hashlib.sha1(f"temp:{seed}:{prompt_id}".encode()).digest()[:8], "big")
    u /= 2**64
    acc = 0.0
    for t, w in mix:
        acc += w
        if u < acc:
            return t
    return mix[-1][0]


def finish(new_ids: list[int], eos: list[int]) -> tuple[list[int], str]:
    """Response ids up to (not including) the first end-of-turn id, and why generation stopped."""
    for i, t in enumerate(new_ids):
        if t in eos:
            return new_ids[:i], "eos"
    return new_ids, "length"


@dataclass
class _Todo:
    prompt: dict[str, Any]
    rid: str
    ids: list[int]
    temperature: float
    seed: int


def _plan(
    prompts: list[dict[str, Any]], tokenizer: Any, done: set[str], mix, seed: int, drops: Drops
) -> list[_Todo]:
    """Prompts still to answer (not decided on disk), each row id once, empty prompts counted."""
    todo, seen = [], set()
    for p in prompts:
        if not str(p.get("prompt", "")).strip():
            drops.add("empty_prompt")
            continue
        temp = assign_temperature(p["id"], mix, seed)
        rid = row_id(p["id"], temp, seed)
        if rid in done:
            continue
        if rid in seen:
            drops.add("duplicate_prompt_id")
            continue
        seen.add(rid)
        todo.append(_Todo(p, rid, encode_prompt(tokenizer, p), temp, request_seed(rid, seed)))
    return todo


def _chunks(todo: list[_Todo], size: int) -> Iterator[list[_Todo]]:
    """Temperature- then length-sorted chunks: batches share a temperature and waste little padding."""
    ordered = sorted(todo, key=lambda t: (t.temperature, len(t.ids), t.rid))
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


@dataclass
class _Tally:
    drops: Drops = field(default_factory=Drops)
    finish: Counter = field(default_factory=Counter)
    by_temperature: Counter = field(default_factory=Counter)
    tokens: int = 0
    seconds: float = 0.0


def _generate_safely(backend: Backend, todo: list[_Todo]) -> list[list[int] | None]:
    """The chunk in one call; if that raises, one request at a time; None where a row still fails."""
    requests = [Request(t.ids, t.temperature, t.seed) for t in todo]
    try:
        return list(backend.generate(requests))
    except Exception as exc:  # noqa: BLE001 - any backend failure: isolate the row that causes it
        warnings.warn(f"KD chunk of {len(todo)} failed ({exc}); retrying one by one", stacklevel=2)
    out: list[list[int] | None] = []
    for r in requests:
        try:
            out.append(backend.generate([r])[0])
        except Exception:  # noqa: BLE001
            out.append(None)
    return out


def _make_row(t: _Todo, resp: list[int], why: str, text: str) -> KDRow:
    p = t.prompt
    return {
        "id": t.rid,
        "prompt_id": p["id"],
        "task": p["task"],
        "prompt": p["prompt"],
        "chat": bool(p.get("chat", True)),
        "temperature": t.temperature,
        "response": text,
        "prompt_tokens": len(t.ids),
        "response_tokens": len(resp),
        "finish": why,
    }


def _answer(
    backend: Backend,
    tokenizer: Any,
    eos: list[int],
    chunk: list[_Todo],
    keep_truncated: bool,
    tally: _Tally,
) -> tuple[list[KDRow], list[DroppedRow]]:
    """(rows kept, rows dropped for good) of one chunk."""
    t0 = time.perf_counter()
    outputs = _generate_safely(backend, chunk)
    tally.seconds += time.perf_counter() - t0
    kept: list[KDRow] = []
    dropped: list[DroppedRow] = []
    for t, new_ids in zip(chunk, outputs, strict=True):
        if new_ids is None:
            tally.drops.add("failed")
            continue
        resp, why = finish(new_ids, eos)
        tally.tokens += len(resp) + (why == "eos")
        text = tokenizer.decode(resp, skip_special_tokens=True)
        reason = "empty_response" if not text.strip() else None
        if reason is None and why == "length" and not keep_truncated:
            reason = "truncated"
        if reason:
            tally.drops.add(reason)
            dropped.append({"id": t.rid, "prompt_id": t.prompt["id"], "reason": reason})
            continue
        tally.finish[why] += 1
        tally.by_temperature[str(t.temperature)] += 1
        kept.append(_make_row(t, resp, why, text))
    return kept, dropped


def _backend(
    name: str,
    model: Any,
    ir_dir: Path | None,
    *,
    eos: list[int],
    pad_id: int,
    max_new: int,
    batch: int,
    threads: int,
) -> Backend:
    if name == "torch":
        return TorchBackend(model, eos, pad_id, max_new, batch)
    if ir_dir is None:
        raise ValueError("KD backend 'openvino' needs ir_dir: the target exported as an IR")
    return OpenVINOBackend(ir_dir, eos, max_new, batch, threads)


def kd_target_ir(target_dir: Path, ir_dir: Path, backend: str) -> Path | None:
    """The target as an fp32 IR for the openvino backend, exported once (a resumed run reuses it).

    fp32 keeps the KD data the target's own: weight compression would make the draft imitate a
    quantized copy. None for the torch backend, which needs no IR.
    """
    if backend != "openvino":
        return None
    if not (Path(ir_dir) / "openvino_model.xml").is_file():
        export_ir(target_dir, ir_dir, "fp32")
    return Path(ir_dir)


def generate_responses(
    target_dir: Path,
    prompts: list[dict[str, Any]],
    out_path: Path,
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    temperature: float | Mapping[float, float] = 0.0,
    seed: int = 0,
    threads: int = 2,
    dtype: str = "auto",
    backend: str = "torch",
    ir_dir: Path | None = None,
    keep_truncated: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Let the target answer `prompts`; append rows to `out_path` (JSONL) and return stats.

    Prompts must fit the target's context with `max_new_tokens` to spare
    (`prompt_sources.fit_to_target` drops and counts the others before generation).

    `temperature` is one temperature (0 = greedy) or a {temperature: weight} mix. `backend`
    "torch" uses `generate` in static batches of `batch_size`; "openvino" runs the target's IR
    at `ir_dir` with continuous batching, `batch_size` sequences in flight.
    """
    from tqdm.auto import tqdm

    if backend not in BACKENDS:
        raise ValueError(f"KD backend {backend!r}: expected one of {BACKENDS}")
    start = time.perf_counter()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mix = parse_temperatures(temperature)
    done = existing_ids(out_path) | existing_ids(dropped_path(out_path), require_response=False)
    model, tokenizer = (
        load_target(target_dir, dtype, threads) if backend == "torch" else (None, None)
    )
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(target_dir)
    eos = end_of_turn_ids(target_dir, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    tally = _Tally()
    todo = _plan(prompts, tokenizer, done, mix, seed, tally.drops)
    roundtrip = tokenizer_roundtrips(tokenizer)
    if not roundtrip:
        warnings.warn(f"{target_dir}: tokenizer does not round-trip plain text", stacklevel=2)
    engine = (
        _backend(
            backend,
            model,
            ir_dir,
            eos=eos,
            pad_id=pad_id,
            max_new=max_new_tokens,
            batch=batch_size,
            threads=threads,
        )
        if todo
        else None
    )
    written = 0
    bar = tqdm(
        total=len(todo), desc=f"kd generate ({backend})", unit="prompt", disable=not progress
    )
    for chunk in _chunks(todo, batch_size * CHUNK_BATCHES):
        kept, dropped = _answer(engine, tokenizer, eos, chunk, keep_truncated, tally)
        append_jsonl(out_path, kept)
        append_jsonl(dropped_path(out_path), dropped)
        written += len(kept)
        bar.update(len(chunk))
    bar.close()
    decided = read_dropped_reasons(dropped_path(out_path))
    transient = {k: v for k, v in tally.drops.items() if k not in decided}  # first-seen order
    return {
        "rows": written,
        "rows_in_file": len(existing_ids(out_path)),
        "skipped_existing": len(done),
        "drops": {**decided, **transient},
        "finish": dict(tally.finish),
        "by_temperature": dict(tally.by_temperature),
        "generated_tokens": tally.tokens,
        "tokens_per_s": tally.tokens / tally.seconds if tally.seconds else 0.0,
        "generate_seconds": tally.seconds,
        "seconds": time.perf_counter() - start,
        "template": template_name(tokenizer, {"chat": True}),
        "tokenizer_roundtrip": roundtrip,
        "backend": backend,
        "dtype": resolve_dtype(dtype) if backend == "torch" else "fp32 (OpenVINO IR, f32 hint)",
        "batch_size": batch_size,
        "temperatures": {str(t): w for t, w in mix},
    }


def read_dropped_reasons(path: Path) -> dict[str, int]:
    """Drop counts by reason over every attempt (the sidecar file keeps them across resumes)."""
    counts: Counter = Counter()
    if Path(path).is_file():
        for row in read_jsonl(path, on_bad="count")[0]:
            if isinstance(row, dict) and "reason" in row:
                counts[row["reason"]] += 1
    return dict(counts)

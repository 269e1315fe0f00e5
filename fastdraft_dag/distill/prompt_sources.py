"""The whole KD prompt set: built-in prompts plus user sources, cleaned, deduplicated, and
checked once more against every evaluation text before the target spends hours answering it.

Built-in candidates (ShareGPT first turns, stdlib code stubs) that overlap an evaluation set are
quietly dropped and counted (`prompts.kd_prompts_with_stats`): they are a sample, another one is
as good. A *user* prompt that overlaps is different: someone chose it, and dropping it silently
would hide a contaminated prompt file. So the assembled set is checked as a whole and any overlap
raises `ContaminationError`, naming every offending prompt id and the evaluation id it matches.

A user source is a mapping (profile `kd.prompt_sources`):
- `{"kind": "jsonl", "path": ..., ["task"], ["max_rows"]}`: rows `{id, task, prompt[, chat]}`;
- `{"kind": "hf", "dataset": ..., ["subset"], ["data_files"], ["split"], ["prompt_column"],
  ["id_column"], ["task"], ["chat"], ["max_rows"]}`: any `datasets` loader, streamed (a hub id,
  or a local builder such as `"json"` with `data_files`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fastdraft_dag.distill.kd_prompts import kd_prompts_with_stats
from fastdraft_dag.prompts.eval_sets import (
    eval_reference_rows,
    kd_id,
    load_prompts_jsonl,
    normalize_key,
    normalize_text,
    row,
)
from fastdraft_dag.prompts.overlap import NgramIndex
from fastdraft_dag.prompts.render import encode_prompt, template_name

SOURCE_KINDS = ("jsonl", "hf")
DROP_REASONS = ("empty", "too_long", "duplicate", "duplicate_id", "malformed")


class ContaminationError(ValueError):
    """KD prompts that share text with an evaluation set; `pairs` = (prompt id, eval id)."""

    def __init__(self, pairs: list[tuple[str, str]], origin: Mapping[str, str]) -> None:
        self.pairs = pairs
        shown = "; ".join(f"{p} ({origin.get(p, 'built-in')}) ~ {e}" for p, e in pairs[:20]) + (
            f"; ... {len(pairs) - 20} more" if len(pairs) > 20 else ""
        )
        super().__init__(
            f"{len(pairs)} KD prompt(s) overlap evaluation texts (equal text or a shared 13-word "
            f"n-gram): {shown}. Remove them from the prompt source, or the evaluation set."
        )


@dataclass(frozen=True)
class PromptSource:
    """One user prompt source; `parse` validates a mapping and names the bad setting."""

    kind: str  # jsonl | hf
    path: str = ""  # jsonl: the file of rows {id, task, prompt[, chat]}
    dataset: str = ""  # hf: hub id or builder (json, parquet) with data_files
    subset: str | None = None  # hf: the dataset's configuration
    data_files: tuple[str, ...] = ()  # hf: data files for a builder
    split: str = "train"  # hf: the split streamed
    prompt_column: str = "prompt"  # hf: the column holding the prompt
    id_column: str | None = None  # hf: the id column; null = a hash of the text
    task: str = ""  # task family of these prompts; '' = the row's own (jsonl) or instructions (hf)
    chat: bool = True  # hf: wrap each prompt in the target's chat template
    max_rows: int | None = None  # at most this many prompts; null = all

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.path or self.dataset}"

    @classmethod
    def parse(cls, raw: Any, where: str = "kd.prompt_sources") -> PromptSource:
        if isinstance(raw, PromptSource):
            return raw
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {raw!r}")
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}")
        values = dict(raw)
        files = values.get("data_files", ())
        values["data_files"] = (files,) if isinstance(files, str) else tuple(files or ())
        src = cls(**values)
        if src.kind not in SOURCE_KINDS:
            raise ValueError(f"{where}.kind: {src.kind!r}, expected one of {SOURCE_KINDS}")
        if src.kind == "jsonl" and not src.path:
            raise ValueError(f"{where}: a jsonl source needs 'path'")
        if src.kind == "hf" and not src.dataset:
            raise ValueError(f"{where}: an hf source needs 'dataset' (a hub id or e.g. 'json')")
        if src.max_rows is not None and src.max_rows <= 0:
            raise ValueError(f"{where}.max_rows: {src.max_rows}, expected a positive count")
        return src


def _jsonl_rows(src: PromptSource, counts: Counter) -> Iterator[dict[str, Any]]:
    rows, malformed = load_prompts_jsonl(Path(src.path), allow_empty=True)
    counts["malformed"] += malformed
    for r in rows:
        yield {**r, "task": src.task or r["task"]}


def _hf_rows(src: PromptSource, counts: Counter) -> Iterator[dict[str, Any]]:
    """Stream a `datasets` source; ids come from `id_column`, else from the text (stable)."""
    from datasets import load_dataset

    kwargs = {"data_files": list(src.data_files)} if src.data_files else {}
    ds = load_dataset(src.dataset, src.subset, split=src.split, streaming=True, **kwargs)
    task = src.task or "instructions"
    for example in ds:
        if src.prompt_column not in example:
            raise ValueError(
                f"prompt source {src.label}: no column {src.prompt_column!r} "
                f"(columns: {sorted(example)}); set prompt_column"
            )
        text = example[src.prompt_column]
        if not isinstance(text, str):
            counts["malformed"] += 1
            continue
        if src.id_column:
            rid = f"{src.dataset}/{example.get(src.id_column)}"
        else:
            rid = kd_id(task, text).replace("kd/", f"{src.dataset}/", 1)
        yield row(rid, task, text, src.chat)


def source_rows(
    src: PromptSource, max_chars: int, seen: set[str], ids: set[str]
) -> tuple[list[dict[str, Any]], Counter]:
    """Clean rows of one source (up to `max_rows` kept) and drop counts by reason.

    `seen` (normalized texts) and `ids` are shared across sources, so dedup spans all of them.
    """
    counts: Counter = Counter()
    reader = _jsonl_rows if src.kind == "jsonl" else _hf_rows
    out: list[dict[str, Any]] = []
    for r in reader(src, counts):
        text = normalize_text(r["prompt"])
        key = normalize_key(text)
        reason = (
            "empty"
            if not key
            else "too_long"
            if len(text) > max_chars
            else "duplicate"
            if key in seen
            else "duplicate_id"
            if r["id"] in ids
            else None
        )
        if reason:
            counts[reason] += 1
            continue
        seen.add(key)
        ids.add(r["id"])
        out.append(row(r["id"], r["task"], text, r["chat"]))
        if src.max_rows is not None and len(out) >= src.max_rows:
            break
    return out, counts


def evaluation_texts(eval_files: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], bool]:
    """Every evaluation text (`eval_reference_rows`) plus user evaluation prompt files.

    Returns (rows, held-out prose indexed?): without sources.py the prose is left out.
    """
    try:
        refs, heldout = eval_reference_rows(), True
    except ImportError:
        refs, heldout = eval_reference_rows(include_heldout=False), False
    for path in eval_files:
        refs += load_prompts_jsonl(Path(path))[0]
    return refs, heldout


def check_disjoint(
    prompts: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    origin: Mapping[str, str] | None = None,
) -> None:
    """Raise ContaminationError listing every prompt that overlaps an evaluation text."""
    index = NgramIndex(eval_rows)
    pairs = [(p["id"], hit) for p in prompts if (hit := index.hit(p["prompt"])) is not None]
    if pairs:
        raise ContaminationError(pairs, origin or {})


def _used(source: str, kind: str, kept: int, drops: Counter) -> dict[str, Any]:
    """One row of the sources table (same columns for every source)."""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(drops.items()) if v)
    return {
        "source": source,
        "kind": kind,
        "rows": kept,
        "dropped": sum(drops.values()),
        "drops": reasons,
    }


def assemble_prompts(
    counts: dict[str, int],
    seed: int = 0,
    max_chars: int = 2000,
    sources: tuple[Any, ...] = (),
    eval_rows: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Built-in prompts (`counts` per family: n_instruction, n_code, n_text, n_summarization)
    + user sources, deduplicated across all, then checked for contamination.

    Returns (rows, stats) with drop counts by reason (overall and per source) and the sources
    used, for asset metadata. Raises ContaminationError (see module docstring).
    """
    heldout = None
    if eval_rows is None:
        eval_rows, heldout = evaluation_texts()
    builtin, bstats = kd_prompts_with_stats(
        counts.get("n_instruction", 0),
        counts.get("n_code", 0),
        seed,
        max_chars,
        eval_rows,
        counts.get("n_text", 0),
        counts.get("n_summarization", 0),
    )
    seen = {normalize_key(r["prompt"]) for r in builtin}
    ids = {r["id"] for r in builtin}
    drops: Counter = Counter()
    used = []
    for fam in bstats["families"]:
        drops += Counter(fam["drops"])
        used.append(_used(fam["source"], "built-in", fam["rows"], Counter(fam["drops"])))
    rows, origin = list(builtin), {}
    for i, raw in enumerate(sources):
        src = PromptSource.parse(raw, f"kd.prompt_sources[{i}]")
        got, counts = source_rows(src, max_chars, seen, ids)
        drops += counts
        used.append(_used(src.label, src.kind, len(got), counts))
        origin |= {r["id"]: f"kd.prompt_sources[{i}] {src.label}" for r in got}
        rows += got
    check_disjoint(rows, eval_rows, origin)
    stats = {
        "prompts": len(rows),
        "by_task": dict(Counter(r["task"] for r in rows)),
        "sources": used,
        "drops": {k: drops[k] for k in (*DROP_REASONS, "eval_overlap") if drops[k]},
        "eval_rows_indexed": len(eval_rows),
        "heldout_indexed": bstats["heldout_indexed"] if heldout is None else heldout,
    }
    return rows, stats


def drop_too_long(
    rows: list[dict[str, Any]], tokenizer: Any, context_len: int, max_new_tokens: int
) -> tuple[list[dict[str, Any]], int]:
    """Prompts whose encoding plus `max_new_tokens` fits the target's context, and how many not.

    Encoded with `prompts.render.encode_prompt`, exactly as generation will see them (template included).
    """

    kept = [r for r in rows if len(encode_prompt(tokenizer, r)) + max_new_tokens <= context_len]
    return kept, len(rows) - len(kept)


def context_length(model_dir: Path) -> int:
    """The target's maximum context (`max_position_embeddings`), from its config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    value = getattr(config, "max_position_embeddings", None)
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{str(model_dir)!r}: config has no max_position_embeddings")
    return value


def fit_to_target(
    rows: list[dict[str, Any]], target_dir: Path, max_new_tokens: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows that fit the target's context with room for the answer, plus what was checked:
    the count dropped (`prompt_too_long`), the context length, and the prompt template used
    (`chat`, or `fallback` when the tokenizer has no chat template: `prompts.render.FALLBACK_TEMPLATE`)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    context = context_length(target_dir)
    kept, dropped = drop_too_long(rows, tokenizer, context, max_new_tokens)
    template = template_name(tokenizer, {"chat": True})
    return kept, {"prompt_too_long": dropped, "context_len": context, "template": template}


def files_fingerprint(paths: Iterable[str]) -> str:
    """Content hash of local prompt / evaluation files: an edited file is a new KD input,
    even under the same path. Missing files hash as missing (reading them fails later, clearly)."""
    digest = hashlib.sha256()
    for path in paths:
        p = Path(path)
        digest.update(str(p).encode())
        digest.update(p.read_bytes() if p.is_file() else b"<missing>")
    return digest.hexdigest()[:16]

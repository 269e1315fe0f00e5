"""KD prompt candidates shipped offline: ShareGPT first turns, stdlib function stubs, and prose
(continuation and summarization) from the training split of the built-in corpora."""

from __future__ import annotations

import ast
import json
import random
import re
import sysconfig
import textwrap
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from fastdraft_dag.prompts.eval_sets import (
    CODE_TEMPLATE,
    SHAREGPT_FILE,
    cut_at_word,
    eval_reference_rows,
    kd_id,
    normalize_key,
    normalize_text,
    package_file,
    row,
)
from fastdraft_dag.prompts.overlap import NgramIndex
from fastdraft_dag.sources.specs import iter_source

# ---------------------------------------------------------------- KD prompts: ShareGPT


_ARRAY_GAP = re.compile(r"[\s\[,]*")


def iter_json_array(path: Path, chunk_chars: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array one by one, stopping cleanly at truncation.

    The shipped ShareGPT file is cut off mid-element, so `json.load` fails; decoding element by
    element keeps every complete conversation and never holds the whole 125 MB parsed at once.
    """
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8", errors="replace") as f:
        buf, idx, eof = "", 0, False
        while True:
            idx = _ARRAY_GAP.match(buf, idx).end()
            if buf.startswith("]", idx):
                return
            try:
                obj, idx = decoder.raw_decode(buf, idx)
            except json.JSONDecodeError:
                if eof:
                    return  # truncated tail: everything complete has been yielded
                more = f.read(chunk_chars)
                eof = not more
                buf, idx = buf[idx:] + more, 0
                continue
            yield obj


def sharegpt_first_turns(path: Path | None = None) -> Iterator[tuple[str, str]]:
    """(conversation id, first human message) in file order."""
    path = path or package_file(*SHAREGPT_FILE)
    for conv in iter_json_array(path):
        if not isinstance(conv, dict):
            continue
        for turn in conv.get("conversations") or []:
            if isinstance(turn, dict) and turn.get("from") in ("human", "user"):
                if isinstance(turn.get("value"), str):
                    yield str(conv.get("id", "")), turn["value"]
                break


def _take(
    texts: Iterable[str],
    task: str,
    n: int,
    max_chars: int,
    index: NgramIndex | None,
    seen: set[str],
    chat: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Filter, dedup and decontaminate candidate texts until `n` rows are collected."""
    out: list[dict[str, Any]] = []
    drops = {"empty": 0, "too_long": 0, "duplicate": 0, "eval_overlap": 0}
    for raw in texts:
        if len(out) >= n:
            break
        text = normalize_text(raw)
        key = normalize_key(text)
        if not key:
            drops["empty"] += 1
        elif len(text) > max_chars:
            drops["too_long"] += 1
        elif key in seen:
            drops["duplicate"] += 1
        elif index is not None and index.hit(text) is not None:
            drops["eval_overlap"] += 1
        else:
            seen.add(key)
            out.append(row(kd_id(task, text), task, text, chat))
    return out, drops


def _seeded_pool(items: Iterator[str], n: int, seed: int) -> Iterator[str]:
    """Seeded order: shuffle a bounded head of the stream, then continue in file order.

    Different seeds give different subsets without reading the whole file; the tail keeps the
    supply going when filters drop many candidates.
    """
    pool = []
    for item in items:
        pool.append(item)
        if len(pool) >= max(4 * n, 256):
            break
    random.Random(seed).shuffle(pool)
    yield from pool
    yield from items


# ---------------------------------------------------------------- KD prompts: stdlib code


def stdlib_files() -> list[Path]:
    """Python stdlib sources, excluding site-packages and test suites (tests are not prompts)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test", "__pycache__"}
    return sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))


def function_stubs(source: str) -> Iterator[str]:
    """Signature + docstring of each documented function: the code-instruction payload."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    lines = source.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = node.body[0] if node.body else None
        if ast.get_docstring(node) is None or doc is None or doc.end_lineno is None:
            continue
        if len(node.body) < 2 or node.name.startswith("_"):
            continue  # docstring-only stubs have nothing to complete; private helpers are noise
        yield textwrap.dedent("\n".join(lines[node.lineno - 1 : doc.end_lineno]))


def code_stub_texts(seed: int) -> Iterator[str]:
    """Code prompts from stdlib functions, files visited in a seeded order."""
    files = stdlib_files()
    random.Random(seed).shuffle(files)
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for stub in function_stubs(source):
            yield CODE_TEMPLATE.format(stub=stub)


# ---------------------------------------------------------------- KD prompts: prose


# Instructions for summarization prompts, drawn per article: varied wording, so the draft learns
# the target's summaries and not one template's (evaluation prompts are never looked at).
SUMMARY_ASKS = (
    "Summarize the following text in a few sentences:\n\n{article}",
    "Write a short summary of this passage.\n\n{article}",
    "{article}\n\nWhat are the main points of the text above?",
    "Give a two-sentence summary of the article below.\n\n{article}",
    "Read the passage and explain briefly what it is about.\n\n{article}",
)


# Mostly encyclopedic prose, some verse and scripture: the shares of the corpora's prose sources.
PROSE_SHARES = {"wikipedia": 0.6, "shakespeare": 0.2, "kjv_bible": 0.2}


def _passage(doc: str, rng: random.Random, lo: int, hi: int) -> str:
    """A passage of lo-hi characters starting at a sentence in the first half of the document."""
    text = " ".join(doc.split())
    start = rng.randrange(max(1, len(text) // 2))
    if start:
        dot = text.find(". ", start)
        start = dot + 2 if 0 <= dot < len(text) - lo else 0
    return cut_at_word(text[start:], rng.randint(lo, hi))


def prose_docs(seed: int, min_chars: int) -> Iterator[str]:
    """Training-split prose (never the held-out split evaluation reads), sources by PROSE_SHARES."""
    streams = {
        name: (d["text"] for d in iter_source(name, split="train") if len(d["text"]) >= min_chars)
        for name in PROSE_SHARES
    }
    rng = random.Random(seed)
    while streams:
        name = rng.choices(list(streams), [PROSE_SHARES[n] for n in streams])[0]
        doc = next(streams[name], None)
        if doc is None:
            del streams[name]
        else:
            yield doc


def continuation_texts(seed: int) -> Iterator[str]:
    """Passages of 200-800 characters for the target to continue as raw text (even docs)."""
    rng = random.Random(seed)
    for doc in islice(prose_docs(seed, 400), 0, None, 2):
        yield _passage(doc, rng, 200, 800)


def summarization_texts(seed: int) -> Iterator[str]:
    """Passages of 600-1500 characters wrapped in one of SUMMARY_ASKS (odd docs)."""
    rng = random.Random(seed + 1)
    for doc in islice(prose_docs(seed, 1200), 1, None, 2):
        ask = rng.choice(SUMMARY_ASKS)
        yield ask.format(article=_passage(doc, rng, 600, 1500))


# ---------------------------------------------------------------- all built-in families


def kd_prompts(
    n_instruction: int,
    n_code: int,
    seed: int = 0,
    max_chars: int = 2000,
    eval_rows: list[dict[str, Any]] | None = None,
    n_text: int = 0,
    n_summarization: int = 0,
) -> list[dict[str, Any]]:
    """Built-in KD prompts (see `kd_prompts_with_stats`), disjoint from evaluation."""
    rows, _ = kd_prompts_with_stats(
        n_instruction, n_code, seed, max_chars, eval_rows, n_text, n_summarization
    )
    return rows


def builtin_families(seed: int) -> dict[str, tuple[str, Iterator[str], bool]]:
    """task -> (source label, candidate texts, chat): lazily read, so unused ones cost nothing."""
    sharegpt = (t for _, t in sharegpt_first_turns())
    return {
        "instructions": ("sharegpt", sharegpt, True),
        "code": ("stdlib_code", code_stub_texts(seed), True),
        "text_completion": ("prose_continuation", continuation_texts(seed), False),
        "summarization": ("prose_summaries", summarization_texts(seed), True),
    }


def kd_prompts_with_stats(
    n_instruction: int,
    n_code: int,
    seed: int = 0,
    max_chars: int = 2000,
    eval_rows: list[dict[str, Any]] | None = None,
    n_text: int = 0,
    n_summarization: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Instruction (ShareGPT first turns), code (stdlib stubs), prose continuation and
    summarization (training-split prose) prompts, with drop counts by family and reason.

    Every candidate sharing a 13-word n-gram with an evaluation text is dropped; `eval_rows`
    defaults to every evaluation text (`eval_reference_rows`; held-out prose skipped with a
    note if sources.py is unavailable).
    """
    heldout = True
    if eval_rows is None:
        try:
            eval_rows = eval_reference_rows()
        except ImportError:
            eval_rows, heldout = eval_reference_rows(include_heldout=False), False
    index = NgramIndex(eval_rows)
    seen: set[str] = set()
    wanted = {
        "instructions": n_instruction,
        "code": n_code,
        "text_completion": n_text,
        "summarization": n_summarization,
    }
    rows: list[dict[str, Any]] = []
    families = []
    for task, (label, texts, chat) in builtin_families(seed).items():
        n = wanted[task]
        if n <= 0:
            continue
        pool = _seeded_pool(texts, n, seed) if task == "instructions" else texts
        got, drops = _take(pool, task, n, max_chars, index, seen, chat)
        rows += got
        families.append({"task": task, "source": label, "rows": len(got), "drops": drops})
    stats = {
        "families": families,
        "eval_rows_indexed": len(eval_rows),
        "heldout_indexed": heldout,
    }
    return rows, stats


# ---------------------------------------------------------------- user-supplied prompts

"""KD prompt candidates shipped offline: ShareGPT first turns and stdlib function stubs."""

from __future__ import annotations

import ast
import json
import random
import re
import sysconfig
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fastdraft_dag.prompts.eval_sets import (
    CODE_TEMPLATE,
    SHAREGPT_FILE,
    eval_reference_rows,
    kd_id,
    normalize_key,
    normalize_text,
    package_file,
    row,
)
from fastdraft_dag.prompts.overlap import NgramIndex

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
            out.append(row(kd_id(task, text), task, text, True))
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


def kd_prompts(
    n_instruction: int,
    n_code: int,
    seed: int = 0,
    max_chars: int = 2000,
    eval_rows: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Instruction (ShareGPT first turns) + code (stdlib stubs) prompts, disjoint from evaluation.

    `eval_rows` defaults to every evaluation text (`eval_reference_rows`); held-out prose is
    skipped with a note if sources.py is unavailable.
    """
    rows, _ = kd_prompts_with_stats(n_instruction, n_code, seed, max_chars, eval_rows)
    return rows


def kd_prompts_with_stats(
    n_instruction: int,
    n_code: int,
    seed: int = 0,
    max_chars: int = 2000,
    eval_rows: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`kd_prompts` plus the drop counts by reason, for asset metadata."""
    heldout = True
    if eval_rows is None:
        try:
            eval_rows = eval_reference_rows()
        except ImportError:
            eval_rows, heldout = eval_reference_rows(include_heldout=False), False
    index = NgramIndex(eval_rows)
    seen: set[str] = set()
    texts = (t for _, t in sharegpt_first_turns())
    inst, inst_drops = _take(
        _seeded_pool(texts, n_instruction, seed),
        "instructions",
        n_instruction,
        max_chars,
        index,
        seen,
    )
    code, code_drops = _take(code_stub_texts(seed), "code", n_code, max_chars, index, seen)
    stats = {
        "instructions": len(inst),
        "code": len(code),
        "drops_instructions": inst_drops,
        "drops_code": code_drops,
        "eval_rows_indexed": len(eval_rows),
        "heldout_indexed": heldout,
    }
    return inst + code, stats


# ---------------------------------------------------------------- user-supplied prompts

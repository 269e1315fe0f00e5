"""Draft vocabulary trimming: rank tokens by frequency in the target's own responses.

The draft's LM head keeps only the K most frequent response tokens (VocabTrim / FR-Spec). A
trimmed draft can never propose a dropped token, so the share of response tokens that are kept
(coverage) caps its greedy acceptance: report it on text that was not used for ranking.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

VOCAB_FILE = "draft_vocab.json"


def token_counts(sequences: Iterable[Sequence[int]]) -> Counter:
    """How often each token id occurs over ``sequences`` (e.g. the target's response ids)."""
    counts: Counter = Counter()
    for seq in sequences:
        counts.update(int(t) for t in seq)
    return counts


def rank_vocab(
    counts: Counter, k: int, vocab_size: int, always_keep: Sequence[int] = ()
) -> np.ndarray:
    """The ``k`` kept ids, sorted ascending: ``always_keep`` (e.g. end-of-turn) first, then by
    count (ties broken by smaller id). If fewer than ``k`` ids were seen, the rest are filled with
    the smallest unseen ids so the head always has exactly ``k`` rows."""
    if not 0 < k <= vocab_size:
        raise ValueError(f"k must be in 1..{vocab_size}, got {k}")
    chosen: list[int] = []
    seen: set[int] = set()
    for t in always_keep:
        if int(t) not in seen and 0 <= int(t) < vocab_size:
            chosen.append(int(t))
            seen.add(int(t))
    for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(chosen) >= k:
            break
        if t not in seen and 0 <= t < vocab_size:
            chosen.append(t)
            seen.add(t)
    filler = (t for t in range(vocab_size) if t not in seen)
    while len(chosen) < k:
        chosen.append(next(filler))
    return np.array(sorted(chosen), dtype=np.int64)


def coverage(kept_ids: Sequence[int], sequences: Iterable[Sequence[int]]) -> float:
    """Share of the tokens of ``sequences`` whose id is in ``kept_ids`` (0.0 for no tokens)."""
    kept = set(int(t) for t in kept_ids)
    total = hit = 0
    for seq in sequences:
        total += len(seq)
        hit += sum(1 for t in seq if int(t) in kept)
    return hit / total if total else 0.0


def save_vocab(dir_: Path, kept_ids: Sequence[int], full_vocab_size: int, **meta: object) -> Path:
    """Write ``draft_vocab.json`` (kept ids ascending, the full vocabulary size, extra metadata)."""
    path = Path(dir_) / VOCAB_FILE
    ids = [int(t) for t in kept_ids]
    if ids != sorted(set(ids)) or (ids and not ids[0] >= 0 and ids[-1] < full_vocab_size):
        raise ValueError("kept_ids must be unique, ascending and inside the full vocabulary")
    path.write_text(json.dumps({"full_vocab_size": full_vocab_size, "kept_ids": ids, **meta}))
    return path


def load_vocab(dir_: Path) -> tuple[np.ndarray, int] | None:
    """(kept ids, full vocabulary size) from ``draft_vocab.json``, or None for a full-vocab draft."""
    path = Path(dir_) / VOCAB_FILE
    if not path.is_file():
        return None
    obj = json.loads(path.read_text())
    return np.asarray(obj["kept_ids"], dtype=np.int64), int(obj["full_vocab_size"])

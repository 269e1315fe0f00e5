"""Disjointness of KD prompts and evaluation texts: shared word n-grams or equal normalized text."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastdraft_dag.prompts.eval_sets import normalize_key


def word_ngrams(text: str, n: int) -> set[int]:
    """Hashes of lower-cased word n-grams; punctuation and whitespace are ignored."""
    words = re.findall(r"\w+", text.lower())
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


class NgramIndex:
    """n-gram hash -> eval id, built once so many candidates can be checked cheaply.

    Whole texts are indexed too (normalized): an evaluation prompt shorter than `n` words has no
    n-gram, yet a KD prompt equal to it is still a leak.
    """

    def __init__(self, eval_rows: Iterable[dict[str, Any]], n: int = 13) -> None:
        self.n = n
        self.owner: dict[int, str] = {}
        self.exact: dict[str, str] = {}
        for r in eval_rows:
            self.exact.setdefault(normalize_key(r["prompt"]), r["id"])
            for h in word_ngrams(r["prompt"], n):
                self.owner.setdefault(h, r["id"])

    def hit(self, text: str) -> str | None:
        """The id of one evaluation row equal to `text` or sharing an n-gram with it, or None."""
        key = normalize_key(text)
        if key and key in self.exact:
            return self.exact[key]
        for h in word_ngrams(text, self.n):
            if h in self.owner:
                return self.owner[h]
        return None


def overlap_with_eval(
    prompts: list[dict[str, Any]], eval_rows: list[dict[str, Any]], n: int = 13
) -> list[tuple[str, str]]:
    """(prompt id, eval id) pairs that share any word n-gram: the contamination report."""
    index = NgramIndex(eval_rows, n)
    pairs = []
    for p in prompts:
        hit = index.hit(p["prompt"])
        if hit is not None:
            pairs.append((p["id"], hit))
    return pairs

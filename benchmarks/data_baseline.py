"""The straightforward way to filter and deduplicate a corpus, as the benchmark's baseline.

A per-document Python loop: each rule is its own small function (as in datatrove) that derives
what it needs from the text, exact duplicates go through a dict of normalized hashes, and near
duplicates use classic MinHash (one hash per shingle and permutation, as datasketch computes it)
with LSH buckets in dicts. Same thresholds as `fastdraft_dag.filters.FilterConfig` and
`fastdraft_dag.dedup.DedupConfig`; the benchmark prints both funnels so they can be compared.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np

from fastdraft_dag.data.dedup import DedupConfig
from fastdraft_dag.data.filters import FilterConfig

STOP = {"the", "be", "to", "of", "and", "that", "have", "with"}
PRIME = (1 << 61) - 1


def _lines(t: str) -> list[str]:
    return [line for line in t.split("\n") if line.strip()]


def _frac_lines(t: str, pattern: str) -> float:
    lines = _lines(t)
    return sum(bool(re.search(pattern, line)) for line in lines) / max(len(lines), 1)


def _dup_chars(parts: list[str]) -> float:
    total = sum(map(len, parts))
    return (total - sum(map(len, set(parts)))) / max(total, 1)


def _dup_ngrams(t: str, n: int) -> float:
    w = t.lower().split()
    grams = [" ".join(w[i : i + n]) for i in range(max(len(w) - n + 1, 1))]
    return 1 - len(set(grams)) / len(grams) if len(grams) > 1 else 0.0


def text_rules(c: FilterConfig, n: int) -> list[tuple[str, Callable[[str], bool]]]:
    return [
        ("min_words", lambda t: len(t.split()) >= c.min_words),
        ("max_words", lambda t: len(t.split()) <= c.max_words),
        (
            "mean_word_len",
            lambda t: (
                c.min_mean_word_len
                <= sum(map(len, t.split())) / max(len(t.split()), 1)
                <= c.max_mean_word_len
            ),
        ),
        (
            "symbol_ratio",
            lambda t: (
                len(re.findall(r"#|\.\.\.|…", t)) / max(len(t.split()), 1) <= c.max_symbol_ratio
            ),
        ),
        (
            "alpha_words",
            lambda t: (
                sum(any(ch.isalpha() for ch in w) for w in t.split()) / max(len(t.split()), 1)
                >= c.min_alpha_word_frac
            ),
        ),
        ("stop_words", lambda t: sum(w.lower() in STOP for w in t.split()) >= c.min_stop_words),
        (
            "punct_lines",
            lambda t: _frac_lines(t, r"""[.!?;:,"'’”)\]][ \t]*$""") >= c.min_punct_line_frac,
        ),
        ("bullet_lines", lambda t: _frac_lines(t, r"^\s*[•●◦▪‣*·–-]\s") <= c.max_bullet_line_frac),
        ("dup_lines", lambda t: _dup_chars(_lines(t)) <= c.max_dup_line_char_frac),
        (
            "dup_paragraphs",
            lambda t: (
                _dup_chars([p for p in re.split(r"\n[ \t]*\n", t) if p.strip()])
                <= c.max_dup_para_char_frac
            ),
        ),
        ("dup_ngrams", lambda t: _dup_ngrams(t, n) <= c.max_dup_ngram_frac),
        (
            "boilerplate",
            lambda t: (
                not re.search("(?i)lorem ipsum", t)
                and _frac_lines(t, c.boilerplate_pattern) <= c.max_boilerplate_line_frac
            ),
        ),
    ]


def code_rules(c: FilterConfig) -> list[tuple[str, Callable[[str], bool]]]:
    def nonspace(t: str) -> int:
        return len(re.sub(r"\s", "", t))

    return [
        ("max_line_len", lambda t: max(map(len, _lines(t)), default=0) <= c.max_line_len),
        ("mean_line_len", lambda t: len(t) / max(len(_lines(t)), 1) <= c.max_mean_line_len),
        (
            "alnum_frac",
            lambda t: len(re.sub(r"[^A-Za-z0-9]", "", t)) / max(len(t), 1) >= c.min_alnum_frac,
        ),
        (
            "digit_frac",
            lambda t: len(re.sub(r"[^0-9]", "", t)) / max(nonspace(t), 1) <= c.max_digit_frac,
        ),
        (
            "encoded_data",
            lambda t: (
                sum(map(len, re.findall(r"[A-Za-z0-9+/]{64,}={0,2}", t))) / max(len(t), 1)
                <= c.max_encoded_frac
            ),
        ),
        (
            "auto_generated",
            lambda t: not re.search(c.generated_pattern, t[: c.generated_head_chars]),
        ),
    ]


class MinHash:
    """Classic MinHash: for every shingle, every permutation (a * h + b) mod p."""

    def __init__(self, config: DedupConfig) -> None:
        rng = np.random.default_rng(config.seed)
        self.a = rng.integers(1, PRIME, size=config.num_perm, dtype=np.uint64)
        self.b = rng.integers(0, PRIME, size=config.num_perm, dtype=np.uint64)
        self.config = config

    def __call__(self, text: str) -> np.ndarray:
        w, n = text.lower().split(), self.config.ngram
        shingles = {" ".join(w[i : i + n]) for i in range(max(len(w) - n + 1, 1))}
        sig = np.full(self.config.num_perm, PRIME, dtype=np.uint64)
        for s in shingles:
            h = np.uint64(int.from_bytes(hashlib.sha1(s.encode()).digest()[:4], "little"))
            sig = np.minimum(sig, (self.a * h + self.b) % np.uint64(PRIME))
        return sig


def run(
    records: Iterable[dict],
    config: FilterConfig = FilterConfig(),  # noqa: B008
    dedup: DedupConfig = DedupConfig(),  # noqa: B008
) -> Counter[str]:
    """Counts per reason ('kept' for survivors) over all records."""
    rules = {"text": text_rules(config, dedup.ngram), "code": code_rules(config)}
    minhash, seen = MinHash(dedup), set()
    buckets: dict[tuple[int, bytes], np.ndarray] = {}
    counts: Counter[str] = Counter()
    rows = dedup.rows
    for r in records:
        t = r["text"]
        reason = "min_chars" if len(t) < config.min_chars else None
        reason = reason or ("max_chars" if len(t) > config.max_chars else None)
        for name, keep in rules[r["domain"]] if reason is None else []:
            if not keep(t):
                reason = name
                break
        if reason is None:
            h = hashlib.md5(re.sub(r"\s+", " ", t.strip().lower()).encode()).hexdigest()
            reason = "exact_dup" if h in seen else None
            seen.add(h)
        if reason is None:
            sig = minhash(t)
            keys = [(b, sig[b * rows : (b + 1) * rows].tobytes()) for b in range(dedup.bands)]
            if any(k in buckets and np.mean(buckets[k] == sig) >= dedup.threshold for k in keys):
                reason = "near_dup"
            else:
                for k in keys:
                    buckets.setdefault(k, sig)
        counts[reason or "kept"] += 1
    return counts

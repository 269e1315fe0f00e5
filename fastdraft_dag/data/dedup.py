"""Near-duplicate detection: MinHash signatures in numpy, LSH banding and verification in DuckDB.

A document's shingles are its word n-grams (lower-cased, split on whitespace). Each signature
entry is a minimum over the shingle hashes (one-permutation MinHash), so two documents agree on an
entry with probability equal to the Jaccard similarity of their shingle sets. Signatures are cut
into bands; documents sharing any band become candidates, and a candidate pair counts as a near
duplicate only when its signatures agree on at least `threshold` of their entries. Signatures are
computed in numpy (no per-shingle Python and one hash per shingle, not one per permutation), so
the cost is a few vectorized passes over the corpus; banding is a self-join that DuckDB runs out
of core.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DedupConfig:
    """128 entries in 32 bands of 4: a pair at 0.7 Jaccard shares a band with p > 0.9999;
    verification at `threshold` then removes the chance collisions of dissimilar pairs."""

    num_perm: int = 128  # MinHash signature entries (a power of two)
    bands: int = 32  # LSH bands; num_perm must be a multiple
    ngram: int = 5  # words per shingle (also the n of filters.max_dup_ngram_frac)
    # estimated Jaccard at which a candidate pair is a near duplicate, in (0, 1]
    threshold: float = 0.7
    seed: int = 1  # seed of the MinHash permutations

    def __post_init__(self) -> None:
        if self.num_perm & (self.num_perm - 1):
            raise ValueError(f"dedup: num_perm {self.num_perm} must be a power of two")
        if self.num_perm % self.bands:
            raise ValueError(
                f"dedup: num_perm {self.num_perm} is not a multiple of bands {self.bands}"
            )
        if not 0 < self.threshold <= 1:
            raise ValueError(f"dedup: threshold {self.threshold} must be in (0, 1]")

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands


_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: multiply-shift hashing


def word_hashes(words: list[str]) -> np.ndarray:
    """crc32 of each word: stable across processes (Python's hash() is salted per process)."""
    return np.fromiter(map(zlib.crc32, map(str.encode, words)), dtype=np.uint64, count=len(words))


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """64-bit hashes of the lower-cased, whitespace-split word n-grams (one for a short doc)."""
    return ngram_hashes(word_hashes(text.lower().split()), n)


def ngram_hashes(h: np.ndarray, n: int) -> np.ndarray:
    """Word-hash n-grams combined polynomially; a doc shorter than `n` is one n-gram."""
    if not len(h):
        return np.zeros(1, dtype=np.uint64)
    n = min(n, len(h))
    out = np.zeros(len(h) - n + 1, dtype=np.uint64)
    for j in range(n):  # polynomial combination, vectorized over positions
        out = out * _MULT + h[j : len(h) - n + 1 + j]
    return out


def dup_ngram_frac(shingles: np.ndarray) -> float:
    """Share of n-grams repeating an earlier one: Gopher's repetition signal, from the same hashes.

    Distinct values counted on a sorted copy: numpy's uint64 sort is vectorized, and ~15x faster
    here than `np.unique`, whose hash table dominated the signature pass.
    """
    if len(shingles) < 2:
        return 0.0
    s = np.sort(shingles)
    return float(np.count_nonzero(s[1:] == s[:-1])) / len(s)


def signature(shingles: np.ndarray, config: DedupConfig) -> np.ndarray:
    """One-permutation MinHash with rotation densification (Li et al. 2012, Shrivastava 2017).

    One hash per shingle, split into `num_perm` bins by its top bits, the minimum kept per bin:
    O(shingles) instead of O(shingles x perms), with the same collision probability per entry.
    Empty bins (short documents) borrow the next non-empty bin's value, offset by the distance.
    """
    k = config.num_perm
    h = (shingles ^ np.uint64(config.seed)) * _MULT
    bins = (h >> np.uint64(64 - k.bit_length() + 1)).astype(np.intp)
    vals = (h & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    sig = np.full(k, np.iinfo(np.uint32).max, dtype=np.uint32)
    np.minimum.at(sig, bins, vals)
    empty = np.ones(k, dtype=bool)
    empty[bins] = False
    if empty.any():
        full = np.nonzero(~empty)[0]
        holes = np.nonzero(empty)[0]
        nxt = full[np.searchsorted(full, holes) % len(full)]
        sig[holes] = sig[nxt] + ((nxt - holes) % k).astype(np.uint32) * np.uint32(0x9E3779B1)
    return sig


def sketch(texts: list[str], config: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (n, num_perm) uint32, duplicate n-gram fractions (n,)) of a batch of texts."""
    sigs = np.empty((len(texts), config.num_perm), dtype=np.uint32)
    dups = np.empty(len(texts), dtype=np.float64)
    for i, text in enumerate(texts):
        shingles = shingle_hashes(text, config.ngram)
        sigs[i] = signature(shingles, config)
        dups[i] = dup_ngram_frac(shingles)
    return sigs, dups


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def components(pairs: np.ndarray, n: int) -> np.ndarray:
    """The smallest index in each node's connected component, for index pairs (edges).

    Vectorized min-label propagation: every edge pulls both ends down to the smaller label, then
    labels jump to their label's label. Each round is a few numpy passes over the edges, and the
    rounds are few (labels halve their distance to the root), where a Python union-find loop
    touched every document one at a time.
    """
    labels = np.arange(n)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    while True:
        low = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new

"""Per-document word features, computed in the same Python pass as the MinHash signature.

The signature already splits each document into lower-cased words and hashes them. Everything
the rules need from a word list (count, characters, stop words, repeated n-grams) and the exact
dedup key are cheap by-products of that split, while asking DuckDB for them meant a regex split
into a list and per-word lambdas: the costliest part of the rules. So words are split once, here,
and the rules in `filters.py` read these columns. Words are Python's `str.split()` words (all
Unicode whitespace), as datatrove's and Gopher's whitespace tokenization has it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from fastdraft_dag.data.dedup import (
    DedupConfig,
    dup_ngram_frac,
    ngram_hashes,
    signature,
    word_hashes,
)

STOP_WORDS = frozenset(("the", "be", "to", "of", "and", "that", "have", "with"))
_STOP_HASHES = word_hashes(sorted(STOP_WORDS))

# Columns `doc_features` adds to every document, as the rules see them.
COLUMNS = pa.schema(
    [
        ("n_words", pa.int64()),
        ("word_chars", pa.int64()),  # characters in words: the text without its whitespace
        ("stop_words", pa.int64()),
        ("dup_ngram_frac", pa.float64()),
        (
            "norm_hash",
            pa.string(),
        ),  # exact-dedup key: md5 of the lower-cased words, one space apart
    ]
)


def _stop_count(words: list[str], hashes: np.ndarray) -> int:
    """Stop words among `words`: a vectorized hash pre-check, then an exact look at the hits."""
    hits = np.flatnonzero(np.isin(hashes, _STOP_HASHES))
    return sum(words[i] in STOP_WORDS for i in hits.tolist())


def doc_features(texts: list[str], config: DedupConfig) -> tuple[np.ndarray, dict[str, list]]:
    """(signatures (n, num_perm) uint32, {column: values} as in `COLUMNS`) of a batch of texts."""
    sigs = np.empty((len(texts), config.num_perm), dtype=np.uint32)
    cols: dict[str, list] = {name: [] for name in COLUMNS.names}
    for i, text in enumerate(texts):
        words = text.lower().split()
        hashes = word_hashes(words)
        shingles = ngram_hashes(hashes, config.ngram)
        sigs[i] = signature(shingles, config)
        joined = " ".join(words)
        cols["n_words"].append(len(words))
        cols["word_chars"].append(len(joined) - max(len(words) - 1, 0))
        cols["stop_words"].append(_stop_count(words, hashes))
        cols["dup_ngram_frac"].append(dup_ngram_frac(shingles))
        cols["norm_hash"].append(hashlib.md5(joined.encode()).hexdigest())
    return sigs, cols

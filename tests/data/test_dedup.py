"""MinHash near-duplicate detection: known answers on planted duplicates and unrelated texts."""

from __future__ import annotations

import numpy as np
import pytest

from fastdraft_dag.data.dedup import (
    DedupConfig,
    components,
    dup_ngram_frac,
    estimated_jaccard,
    shingle_hashes,
    sketch,
)
from fastdraft_dag.sources.specs import iter_source

CONFIG = DedupConfig()


def jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = set(shingle_hashes(a, n).tolist()), set(shingle_hashes(b, n).tolist())
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def chapters() -> list[str]:
    return [r["text"] for r in iter_source("kjv_bible", max_docs=40)]


def test_signature_estimates_jaccard(chapters: list[str]) -> None:
    base = chapters[0]
    words = base.split()
    edited = " ".join(words[: len(words) // 2] + ["INSERTED"] * 5 + words[len(words) // 2 :])
    half = " ".join(words[: len(words) // 2])
    sigs, _ = sketch([base, edited, half, chapters[1]], CONFIG)
    for other, sig in ((edited, sigs[1]), (half, sigs[2]), (chapters[1], sigs[3])):
        assert abs(estimated_jaccard(sigs[0], sig) - jaccard(base, other)) < 0.15


def test_signatures_are_deterministic_across_calls(chapters: list[str]) -> None:
    a, _ = sketch(chapters[:5], CONFIG)
    b, _ = sketch(chapters[:5], CONFIG)
    assert a.dtype == np.uint32 and a.shape == (5, CONFIG.num_perm)
    assert (a == b).all()


def test_unrelated_texts_do_not_look_alike(chapters: list[str]) -> None:
    sigs, _ = sketch(chapters, CONFIG)
    sims = [estimated_jaccard(sigs[i], sigs[j]) for i in range(20) for j in range(i + 1, 20)]
    assert max(sims) < CONFIG.threshold


def test_dup_ngram_frac_known_answers() -> None:
    assert dup_ngram_frac(shingle_hashes("a b c d e f g h", 5)) == 0.0
    # "x y x y x y": 2-grams xy, yx, xy, yx, xy -> 3 of 5 repeat an earlier one
    assert dup_ngram_frac(shingle_hashes("x y x y x y", 2)) == pytest.approx(0.6)


def test_components_keep_smallest_index() -> None:
    roots = components(np.array([[3, 1], [4, 3], [6, 5]]), 7)
    assert roots.tolist() == [0, 1, 2, 1, 1, 5, 5]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="power of two"):
        DedupConfig(num_perm=100, bands=10)
    with pytest.raises(ValueError, match="multiple of bands"):
        DedupConfig(num_perm=128, bands=12)

"""Grown corpora: copies are near or far duplicates as intended, dumps are complete, fits are right."""

from __future__ import annotations

import random

import pyarrow.parquet as pq
import pytest

from fastdraft_dag.data.dedup import DedupConfig, shingle_hashes, sketch
from fastdraft_dag.data.filters import first_failing
from fastdraft_dag.data.scaling import (
    FAR_RATE,
    NEAR_RATE,
    grow_corpus,
    growth_exponent,
    perturb,
    write_parts,
)
from fastdraft_dag.sources.specs import iter_source


@pytest.fixture(scope="module")
def chapters() -> list[dict]:
    return list(iter_source("kjv_bible", max_docs=12))


def jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_hashes(a, 5).tolist()), set(shingle_hashes(b, 5).tolist())
    return len(sa & sb) / len(sa | sb)


def test_near_copy_is_a_near_duplicate_and_far_copy_is_not(chapters: list[dict]) -> None:
    text = chapters[0]["text"]
    near = perturb(text, random.Random(1), NEAR_RATE)
    far = perturb(text, random.Random(1), FAR_RATE)
    assert near != text
    assert 0.7 < jaccard(text, near) < 0.98
    assert jaccard(text, far) < 0.3
    # MinHash sees the same: the near copy is above the dedup threshold, the far one below.
    sigs, _ = sketch([text, near, far], DedupConfig())
    assert (sigs[0] == sigs[1]).mean() >= DedupConfig().threshold
    assert (sigs[0] == sigs[2]).mean() < DedupConfig().threshold


def test_perturbed_copies_pass_the_same_rules(chapters: list[dict]) -> None:
    docs = [{"domain": "text", "text": c["text"]} for c in chapters[:6]]
    copies = [
        {"domain": "text", "text": perturb(d["text"], random.Random(2), NEAR_RATE)} for d in docs
    ]
    assert first_failing(copies) == first_failing(docs)


def test_perturb_keeps_lines_and_rejects_bad_rate() -> None:
    text = "one two three\nfour five six\n\nseven eight"
    out = perturb(text, random.Random(0), 0.5)
    assert out.count("\n") == text.count("\n")
    assert perturb(text, random.Random(0), 0.0) == text
    with pytest.raises(ValueError, match="rate 1.5"):
        perturb(text, random.Random(0), 1.5)


def test_grow_corpus_reaches_the_size_deterministically(chapters: list[dict]) -> None:
    base = sum(len(c["text"].encode()) for c in chapters)
    grown = list(grow_corpus(chapters, 5 * base, seed=3))
    size = sum(len(r["text"].encode()) for r in grown)
    assert 5 * base <= size < 5 * base + max(len(c["text"].encode()) for c in chapters)
    assert len({r["id"] for r in grown}) == len(grown)  # ids stay unique
    assert grown[: len(chapters)] == chapters  # originals first, unchanged
    assert [r["text"] for r in grow_corpus(chapters, 5 * base, seed=3)] == [
        r["text"] for r in grown
    ]
    assert [r["text"] for r in grow_corpus(chapters, 5 * base, seed=4)] != [
        r["text"] for r in grown
    ]
    with pytest.raises(ValueError, match="no records"):
        next(grow_corpus([], 10))


def test_write_parts_round_robin_and_complete(tmp_path, chapters: list[dict]) -> None:
    paths = write_parts(iter(chapters), tmp_path / "dump", 3)
    assert [p.name for p in paths] == [f"part-{i:05d}.parquet" for i in range(3)]
    tables = [pq.read_table(p).to_pylist() for p in paths]
    assert [len(t) for t in tables] == [4, 4, 4]
    assert tables[1][0] == {"id": chapters[1]["id"], "text": chapters[1]["text"]}
    assert not list((tmp_path / "dump").glob(".*"))  # no temporary files left
    with pytest.raises(ValueError, match="n_files 0"):
        write_parts(iter(chapters), tmp_path / "x", 0)


def test_growth_exponent() -> None:
    sizes = [1, 2, 4, 8]
    assert growth_exponent(sizes, [3 * s for s in sizes]) == pytest.approx(1.0)
    assert growth_exponent(sizes, [5 * s**1.5 for s in sizes]) == pytest.approx(1.5)
    assert growth_exponent(sizes, [7.0] * 4) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="distinct"):
        growth_exponent([2, 2], [1, 2])
    with pytest.raises(ValueError, match="> 0"):
        growth_exponent([1, 2], [0, 1])

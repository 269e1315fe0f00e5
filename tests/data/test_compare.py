"""Kept-set overlap and the grouping of disagreements by each side's reason."""

from __future__ import annotations

import pytest

from fastdraft_dag.data.compare import Disagreement, disagreements, kept_jaccard


def test_kept_jaccard() -> None:
    assert kept_jaccard({"a", "b", "c"}, {"b", "c", "d"}) == pytest.approx(0.5)
    assert kept_jaccard(["a"], ["a"]) == 1.0
    assert kept_jaccard([], []) == 1.0
    assert kept_jaccard(["a"], []) == 0.0


def test_disagreements_grouped_by_side_and_reasons() -> None:
    ours = {"k", "o1", "o2", "o3"}
    theirs = {"k", "t1"}
    asked: dict[str, list[str]] = {}

    def our_reason(ids):
        asked["ours"] = list(ids)
        return {"t1": "min_words"}

    def their_reason(ids):
        asked["theirs"] = list(ids)
        return {"o1": "gopher_short_doc", "o2": "gopher_short_doc", "o3": "minhash"}

    out = disagreements(ours, theirs, our_reason, their_reason)
    # each side is asked only about what it dropped and the other kept, never the shared one
    assert asked == {"ours": ["t1"], "theirs": ["o1", "o2", "o3"]}
    assert out == [
        Disagreement("ours", "kept", "gopher_short_doc", 2, "o1"),
        Disagreement("ours", "kept", "minhash", 1, "o3"),
        Disagreement("theirs", "min_words", "kept", 1, "t1"),
    ]
    assert disagreements(ours, theirs, our_reason, their_reason, top=1)[0].docs == 2
    unexplained = disagreements(ours, theirs, lambda ids: {}, lambda ids: {})
    assert {(g.our_reason, g.their_reason) for g in unexplained} == {("kept", "?"), ("?", "kept")}

"""The benchmark's datatrove filters, aligned with ours, agree with our rules on real documents.

Skips where datatrove (the optional `bench` extra) is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("datatrove")

from fastdraft_dag.data.filters import first_failing  # noqa: E402
from fastdraft_dag.sources.specs import iter_source  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "data_vs_datatrove.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("data_vs_datatrove", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def datatrove_keeps(bench, text: str) -> bool:
    from datatrove.data import Document

    doc = Document(text=text, id="x", metadata={"domain": "text"})
    verdicts = [f.filter(doc) for f in bench.datatrove_filters()]
    return bench.in_length(doc) and all(v is True for v in verdicts)


def test_kjv_and_wikipedia_kept_by_both(bench) -> None:
    docs = [r["text"] for s in ("kjv_bible", "wikipedia") for r in iter_source(s, max_docs=20)]
    ours = first_failing([{"domain": "text", "text": t} for t in docs], bench.ALIGNED_FILTERS)
    theirs = [datatrove_keeps(bench, t) for t in docs]
    agree = sum((o is None) == t for o, t in zip(ours, theirs, strict=True))
    assert agree / len(docs) >= 0.95


def test_both_drop_a_repetitive_short_doc(bench) -> None:
    junk = "buy now " * 30
    assert first_failing([{"domain": "text", "text": junk}], bench.ALIGNED_FILTERS) != [None]
    assert not datatrove_keeps(bench, junk)

"""Evaluation families, KD prompts and their disjointness, ShareGPT streaming, user prompt files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fastdraft_dag import prompts as P

HAVE_SOURCES = importlib.util.find_spec("fastdraft_dag.sources") is not None
FIELDS = {"id": str, "task": str, "prompt": str, "chat": bool}


def _check_rows(rows: list[dict]) -> None:
    assert rows
    for r in rows:
        assert set(r) == set(FIELDS)
        assert all(isinstance(r[k], t) for k, t in FIELDS.items())
        assert r["prompt"].strip()
    assert len({r["id"] for r in rows}) == len(rows)


@pytest.fixture(scope="module")
def kd_rows() -> list[dict]:
    return P.kd_prompts(30, 20, seed=0)


@pytest.mark.parametrize("family", P.EVAL_FAMILIES)
def test_eval_families(family: str) -> None:
    if family == "text_completion" and not HAVE_SOURCES:
        pytest.skip("fastdraft_dag.sources not available")
    rows = P.eval_prompts(family, 5)
    _check_rows(rows)
    assert len(rows) == 5
    assert all(r["task"] == family for r in rows)
    assert rows == P.eval_prompts(family, 5)
    assert {r["chat"] for r in rows} == {family in ("instructions", "summarization")}


def test_eval_family_sizes_and_shapes() -> None:
    assert len(P.eval_prompts("code", 1000)) == 164
    assert len(P.eval_prompts("instructions", 1000)) == 80
    summ = P.eval_prompts("summarization", 1000)
    assert len(summ) == 300
    assert all(r["prompt"].startswith("Summarize the following news article") for r in summ)
    assert max(len(r["prompt"]) for r in summ) < P.ARTICLE_CHARS + 100
    with pytest.raises(ValueError, match="unknown evaluation family"):
        P.eval_prompts("poetry", 3)


@pytest.mark.skipif(not HAVE_SOURCES, reason="fastdraft_dag.sources not available")
def test_text_completion_cut_at_word() -> None:
    rows = P.eval_prompts("text_completion", 6)
    assert all(len(r["prompt"]) <= P.COMPLETION_CHARS for r in rows)
    assert len({r["id"].split("/")[2] for r in rows}) > 1  # several prose sources represented


def test_kd_prompts_deterministic_unique_and_stable_ids(kd_rows: list[dict]) -> None:
    _check_rows(kd_rows)
    tasks = [r["task"] for r in kd_rows]
    assert tasks.count("instructions") == 30 and tasks.count("code") == 20
    assert all(r["chat"] for r in kd_rows)
    assert all(r["id"] == P.kd_id(r["task"], r["prompt"]) for r in kd_rows)
    assert all(len(r["prompt"]) <= 2000 for r in kd_rows)
    assert P.kd_prompts(30, 20, seed=0) == kd_rows
    other = P.kd_prompts(30, 0, seed=1)
    assert {r["id"] for r in other} != {r["id"] for r in kd_rows if r["task"] == "instructions"}


def test_kd_prompts_disjoint_from_eval(kd_rows: list[dict]) -> None:
    refs = P.eval_reference_rows(include_heldout=HAVE_SOURCES)
    assert P.overlap_with_eval(kd_rows, refs) == []


def test_planted_eval_prompt_is_caught(kd_rows: list[dict]) -> None:
    question = P.eval_prompts("instructions", 3)[2]
    planted = P.row(
        "kd/instructions/planted", "instructions", "Please: " + question["prompt"], True
    )
    pairs = P.overlap_with_eval([*kd_rows[:5], planted], P.eval_prompts("instructions", 80))
    assert pairs == [("kd/instructions/planted", question["id"])]


def test_kd_prompts_remove_overlapping_candidates(kd_rows: list[dict]) -> None:
    victim = kd_rows[0]
    fake_eval = [P.row("eval/fake/0", "instructions", victim["prompt"], True)]
    rows = P.kd_prompts(30, 0, seed=0, eval_rows=fake_eval)
    if len(victim["prompt"].split()) >= 13:
        assert victim["id"] not in {r["id"] for r in rows}
    assert len(rows) == 30


def test_stream_decode_survives_truncation(tmp_path: Path) -> None:
    items = [
        {"id": f"c{i}", "conversations": [{"from": "human", "value": f"q {i} ]["}]}
        for i in range(50)
    ]
    text = json.dumps(items, indent=2)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) * 2 // 3])  # cut mid-element
    got = list(P.iter_json_array(path, chunk_chars=97))
    assert 20 < len(got) < 50
    assert got == items[: len(got)]
    assert [t for _, t in P.sharegpt_first_turns(path)][:2] == ["q 0 ][", "q 1 ]["]


def test_real_sharegpt_file_streams() -> None:
    first = next(P.sharegpt_first_turns())
    assert first[0] and first[1].strip()


def test_load_prompts_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = [
        json.dumps({"id": "a", "task": "t", "prompt": "hello"}),
        json.dumps({"id": "b", "task": "code", "prompt": "def f():", "chat": False}),
        "{not json",
        json.dumps({"id": "c", "task": "t"}),
        json.dumps({"id": "d", "task": "t", "prompt": "x", "chat": "yes"}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "a", "task": "t", "prompt": "duplicate id"}),
        "",
    ]
    path.write_text("\n".join(lines))
    rows, dropped = P.load_prompts_jsonl(path)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[0]["chat"] is True and rows[1]["chat"] is False
    assert dropped == 5


def test_load_prompts_jsonl_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(ValueError, match="missing.jsonl"):
        P.load_prompts_jsonl(missing)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\nnot json\n")
    with pytest.raises(ValueError, match="bad.jsonl"):
        P.load_prompts_jsonl(bad)

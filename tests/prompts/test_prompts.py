"""Evaluation families, KD prompts and their disjointness, ShareGPT streaming, user prompt files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fastdraft_dag.distill import kd_prompts as K
from fastdraft_dag.prompts import eval_sets as P
from fastdraft_dag.prompts import overlap as O

HAVE_SOURCES = importlib.util.find_spec("fastdraft_dag.sources.specs") is not None
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
    return K.kd_prompts(30, 20, seed=0)


@pytest.mark.parametrize("family", P.EVAL_FAMILIES)
def test_eval_families(family: str) -> None:
    if family == "text_completion" and not HAVE_SOURCES:
        pytest.skip("fastdraft_dag.sources.specs not available")
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


@pytest.mark.skipif(not HAVE_SOURCES, reason="fastdraft_dag.sources.specs not available")
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
    assert K.kd_prompts(30, 20, seed=0) == kd_rows
    other = K.kd_prompts(30, 0, seed=1)
    assert {r["id"] for r in other} != {r["id"] for r in kd_rows if r["task"] == "instructions"}


def test_kd_prompts_disjoint_from_eval(kd_rows: list[dict]) -> None:
    refs = P.eval_reference_rows(include_heldout=HAVE_SOURCES)
    assert O.overlap_with_eval(kd_rows, refs) == []


def test_planted_eval_prompt_is_caught(kd_rows: list[dict]) -> None:
    question = P.eval_prompts("instructions", 3)[2]
    planted = P.row(
        "kd/instructions/planted", "instructions", "Please: " + question["prompt"], True
    )
    pairs = O.overlap_with_eval([*kd_rows[:5], planted], P.eval_prompts("instructions", 80))
    assert pairs == [("kd/instructions/planted", question["id"])]


def test_kd_prompts_remove_overlapping_candidates(kd_rows: list[dict]) -> None:
    victim = kd_rows[0]
    fake_eval = [P.row("eval/fake/0", "instructions", victim["prompt"], True)]
    rows = K.kd_prompts(30, 0, seed=0, eval_rows=fake_eval)
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
    got = list(K.iter_json_array(path, chunk_chars=97))
    assert 20 < len(got) < 50
    assert got == items[: len(got)]
    assert [t for _, t in K.sharegpt_first_turns(path)][:2] == ["q 0 ][", "q 1 ]["]


def test_real_sharegpt_file_streams() -> None:
    first = next(K.sharegpt_first_turns())
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


# ---------------------------------------------------------------- assembled KD prompt set


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


FAKE_EVAL = [P.row("eval/fake/0", "instructions", "an evaluation prompt nobody else uses", True)]


def test_user_jsonl_with_an_eval_prompt_fails_naming_both_ids(tmp_path: Path) -> None:
    from fastdraft_dag.distill.prompt_sources import ContaminationError, assemble_prompts

    question = P.eval_prompts("instructions", 3)[2]
    path = _jsonl(tmp_path / "mine.jsonl", [
        {"id": "u-ok", "task": "instructions", "prompt": "Name three primary colors."},
        {"id": "u-planted", "task": "instructions", "prompt": "Hi! " + question["prompt"]},
    ])  # fmt: skip
    with pytest.raises(ContaminationError) as err:
        assemble_prompts(
            {"n_instruction": 2, "n_code": 1}, sources=({"kind": "jsonl", "path": str(path)},)
        )
    assert err.value.pairs == [("u-planted", question["id"])]
    assert "u-planted" in str(err.value) and question["id"] in str(err.value)
    assert "mine.jsonl" in str(err.value)  # which source it came from


def test_user_eval_file_short_prompt_caught_by_exact_match(tmp_path: Path) -> None:
    from fastdraft_dag.distill.prompt_sources import (
        ContaminationError,
        assemble_prompts,
        evaluation_texts,
    )

    evals = _jsonl(tmp_path / "eval.jsonl", [{"id": "my-eval-7", "task": "t", "prompt": "Why?"}])
    kd = _jsonl(tmp_path / "kd.jsonl", [{"id": "u1", "task": "t", "prompt": "  why? "}])
    eval_rows, _ = evaluation_texts((str(evals),))
    assert eval_rows[-1]["id"] == "my-eval-7"
    with pytest.raises(ContaminationError, match="u1.*my-eval-7"):
        assemble_prompts({}, sources=({"kind": "jsonl", "path": str(kd)},), eval_rows=eval_rows)


def test_empty_whitespace_long_and_duplicate_prompts_are_counted(tmp_path: Path) -> None:
    from fastdraft_dag.distill.prompt_sources import assemble_prompts

    path = _jsonl(tmp_path / "mine.jsonl", [
        {"id": "a", "task": "t", "prompt": "Write a limerick about a cat."},
        {"id": "b", "task": "t", "prompt": "   \n\t "},
        {"id": "c", "task": "t", "prompt": ""},
        {"id": "d", "task": "t", "prompt": "word " * 100},
        {"id": "e", "task": "t", "prompt": "write a  LIMERICK about a cat."},
        {"id": "f", "task": "t"},
    ])  # fmt: skip
    src = {"kind": "jsonl", "path": str(path), "task": "instructions"}
    rows, stats = assemble_prompts({}, max_chars=200, sources=(src,), eval_rows=FAKE_EVAL)
    assert [r["id"] for r in rows] == ["a"] and rows[0]["task"] == "instructions"
    assert stats["drops"] == {"empty": 2, "too_long": 1, "duplicate": 1, "malformed": 1}
    mine = stats["sources"][-1]
    assert mine["source"] == f"jsonl:{path}" and mine["rows"] == 1 and mine["dropped"] == 5


def test_hf_prompt_source_via_the_json_builder(tmp_path: Path) -> None:
    from fastdraft_dag.distill.prompt_sources import assemble_prompts

    path = _jsonl(tmp_path / "hub.jsonl", [
        {"qid": i, "question": f"Question number {i}: what is {i} squared?"} for i in range(6)
    ])  # fmt: skip
    src = {"kind": "hf", "dataset": "json", "data_files": str(path), "prompt_column": "question",
           "id_column": "qid", "task": "math", "max_rows": 4, "chat": False}  # fmt: skip
    rows, stats = assemble_prompts({"n_instruction": 1}, sources=(src,), eval_rows=FAKE_EVAL)
    hub = [r for r in rows if r["task"] == "math"]
    assert [r["id"] for r in hub] == [f"json/{i}" for i in range(4)]
    assert hub[0]["prompt"] == "Question number 0: what is 0 squared?" and not hub[0]["chat"]
    assert len(rows) == 5 and stats["by_task"] == {"instructions": 1, "math": 4}
    bad = {**src, "prompt_column": "text"}
    with pytest.raises(ValueError, match="no column 'text'"):
        assemble_prompts({}, sources=(bad,), eval_rows=FAKE_EVAL)


def test_prompt_source_settings_are_validated() -> None:
    from fastdraft_dag.config.presets import KDConfig
    from fastdraft_dag.distill.prompt_sources import PromptSource

    with pytest.raises(ValueError, match=r"kd.prompt_sources\[0\].kind"):
        KDConfig(prompt_sources=({"kind": "csv", "path": "x"},))
    with pytest.raises(ValueError, match=r"unknown keys \['colum'\]"):
        PromptSource.parse({"kind": "hf", "dataset": "json", "colum": "q"})
    with pytest.raises(ValueError, match="needs 'path'"):
        PromptSource.parse({"kind": "jsonl"})
    cfg = KDConfig(prompt_sources=({"kind": "jsonl", "path": "p.jsonl", "max_rows": 3},))
    assert cfg.prompt_sources[0] == PromptSource("jsonl", path="p.jsonl", max_rows=3)


def test_prompts_too_long_for_the_context_are_dropped(tiny_target_dir: Path, tokenizer) -> None:
    from fastdraft_dag.distill.prompt_sources import drop_too_long, fit_to_target
    from fastdraft_dag.prompts.render import render_prompt as prompt_text

    rows = [P.row(f"r{i}", "t", "word " * (5 * i + 1), True) for i in range(8)]
    lengths = [len(tokenizer(prompt_text(tokenizer, r))["input_ids"]) for r in rows]
    kept, dropped = drop_too_long(rows, tokenizer, context_len=40, max_new_tokens=8)
    assert [r["id"] for r in kept] == [
        r["id"] for r, n in zip(rows, lengths, strict=True) if n + 8 <= 40
    ]
    assert dropped == sum(n + 8 > 40 for n in lengths) and 0 < dropped < len(rows)
    kept, info = fit_to_target(rows, tiny_target_dir, max_new_tokens=8)
    assert info == {"prompt_too_long": 0, "context_len": 8192, "template": "chat"}


def test_no_chat_template_is_reported_as_fallback(tiny_target_dir: Path, tmp_path: Path) -> None:
    from fastdraft_dag.distill.prompt_sources import fit_to_target

    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((tiny_target_dir / name).read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    rows = [P.row("r", "t", "Hello there", True)]
    assert fit_to_target(rows, tmp_path, 8)[1]["template"] == "fallback"


@pytest.mark.skipif(not HAVE_SOURCES, reason="fastdraft_dag.sources.specs not available")
def test_prose_kd_families_come_from_the_training_split_and_miss_every_eval_text() -> None:
    rows, stats = K.kd_prompts_with_stats(0, 0, seed=0, n_text=12, n_summarization=6)
    _check_rows(rows)
    text = [r for r in rows if r["task"] == "text_completion"]
    summ = [r for r in rows if r["task"] == "summarization"]
    assert len(text) == 12 and len(summ) == 6
    assert not any(r["chat"] for r in text) and all(r["chat"] for r in summ)
    assert all(200 // 2 <= len(r["prompt"]) <= 800 for r in text)
    assert len({r["prompt"].split("\n")[0] for r in summ}) > 1  # varied requests, not one template
    assert not any(r["prompt"].startswith("Summarize the following news article") for r in summ)
    assert [f["task"] for f in stats["families"]] == ["text_completion", "summarization"]
    heldout = [P.row(f"h/{d['id']}", "text", d["text"], False) for d in P.heldout_docs(50)]
    assert O.overlap_with_eval(rows, P.eval_reference_rows() + heldout) == []
    assert K.kd_prompts(0, 0, seed=0, n_text=12, n_summarization=6) == rows

"""KD rows on disk and SFT arrays (loss mask = response + eos); generation is in test_kd_generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fastdraft_dag.distill import kd_rows as kd
from fastdraft_dag.prompts import render


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_torn_last_line_is_repaired(tmp_path: Path) -> None:
    out = tmp_path / "kd.jsonl"
    good = {"id": "p0/t0.0/s0", "response": "x"}
    out.write_text(json.dumps(good) + "\n" + '{"id": "p1/t0.0/s0", "resp')
    assert kd.existing_ids(out) == {"p0/t0.0/s0"}
    assert _lines(out) == [good]


def test_a_repeated_id_is_read_once_and_rewritten_away(tmp_path: Path) -> None:
    """Two writers appending the same rows (before builds were locked) must not double the set."""
    out = tmp_path / "kd.jsonl"
    a, b = {"id": "a", "response": "1"}, {"id": "b", "response": "2"}
    late = {"id": "a", "response": "other"}
    out.write_text("".join(json.dumps(r) + "\n" for r in (a, b, late, b)))
    assert kd.read_rows(out) == ([a, b], 2)
    assert kd.existing_ids(out) == {"a", "b"}
    assert _lines(out) == [a, b]


def _kd_row(rid: str, prompt: str, response: str, finish: str = "eos", chat: bool = True) -> dict:
    return {
        "id": rid,
        "prompt_id": rid,
        "task": "instructions",
        "prompt": prompt,
        "chat": chat,
        "response": response,
        "finish": finish,
    }


def test_sft_labels_mask_exactly_the_prompt(tiny_target_dir: Path, tokenizer) -> None:
    rows = [
        _kd_row(f"r{i}", f"Question number {i}?", f"Answer {i}: forty two.") for i in range(20)
    ] + [_kd_row("raw", "def f(x):", "    return x", chat=False)]
    arrays, stats = kd.build_sft_arrays(rows, tiny_target_dir, max_len=96, val_fraction=0.25)
    eos = kd.end_of_turn_ids(tiny_target_dir, tokenizer)[0]
    assert stats["train"] + stats["val"] == 21 and stats["val"] > 0
    assert arrays["train_input_ids"].dtype == np.int32 and arrays["val_labels"].dtype == np.int64
    assert arrays["train_attention_mask"].dtype == np.int8
    by_id = {r["id"]: r for r in rows}
    train_ids = [r["id"] for r in rows if not kd.is_val(r["id"], 0.25, 0)]
    for i, rid in enumerate(train_ids):
        ids, labels = arrays["train_input_ids"][i], arrays["train_labels"][i]
        mask = arrays["train_attention_mask"][i]
        prompt = render.encode_prompt(tokenizer, by_id[rid])
        response = tokenizer(by_id[rid]["response"], add_special_tokens=False)["input_ids"]
        learned = labels[labels != kd.IGNORE].tolist()
        assert learned == [*response, eos]
        assert (labels[: len(prompt)] == kd.IGNORE).all()
        assert ids[: len(prompt)].tolist() == prompt
        assert int(mask.sum()) == len(prompt) + len(response) + 1
        assert tokenizer.decode(learned[:-1]) == tokenizer.decode(response)


def test_sft_truncation_and_unfinished(tiny_target_dir: Path) -> None:
    rows = [
        _kd_row("long", "Hi", "word " * 200),
        _kd_row("cut", "Hi", "unfinished answer", finish="length"),
        _kd_row("huge-prompt", "x " * 500, "ok"),
    ]
    arrays, stats = kd.build_sft_arrays(rows, tiny_target_dir, max_len=64, val_fraction=0.0)
    assert stats["truncated_to_max_len"] == 1 and stats["dropped_unfinished"] == 1
    assert stats["dropped_prompt_too_long"] == 1 and stats["train"] == 1
    assert arrays["train_input_ids"].shape == (1, 64) and arrays["val_input_ids"].shape == (0, 64)
    kept, _ = kd.build_sft_arrays(rows[1:2], tiny_target_dir, 64, 0.0, drop_truncated=False)
    assert kept["train_labels"].shape == (1, 64)


def test_save_sft_npz_atomic(tmp_path: Path) -> None:
    arrays = {"train_input_ids": np.arange(6, dtype=np.int32).reshape(2, 3)}
    path = tmp_path / "sft.npz"
    kd.save_sft_npz(arrays, path)
    assert list(tmp_path.iterdir()) == [path]
    with np.load(path) as z:
        assert (z["train_input_ids"] == arrays["train_input_ids"]).all()


def test_rows_with_unicode_line_separators_survive(tmp_path: Path) -> None:
    """Target text can hold U+2028/U+2029/U+0085; JSONL written raw must read back whole."""
    out = tmp_path / "kd.jsonl"
    rows = [
        {"id": f"p{i}/t0.0/s0", "response": f"line one{sep}line two"}
        for i, sep in enumerate(["\u2028", "\u2029", "\x85", "\x0c"])
    ]
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    assert kd.read_rows(out) == (rows, 0)
    assert kd.existing_ids(out) == {r["id"] for r in rows}
    assert kd.read_rows(out)[0] == rows  # existing_ids did not rewrite anything away

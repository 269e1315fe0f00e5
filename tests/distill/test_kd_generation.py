"""KD generation: temperature mix, drops by reason, resume after a kill, and both backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastdraft_dag.distill import backends as kd_backends
from fastdraft_dag.distill import generation as kd_generation
from fastdraft_dag.distill.config import KDConfig
from fastdraft_dag.distill.generation import generate_responses
from fastdraft_dag.distill.kd_dataset import build_kd_dataset, task_totals

PROMPTS = [
    {"id": f"p{i}", "task": "instructions", "prompt": text, "chat": True}
    for i, text in enumerate(
        [
            "Write a haiku about autumn leaves.",
            "What is the capital of France?",
            "Explain recursion to a child.",
            "List three uses of a paperclip.",
        ]
    )
] + [
    {"id": "c0", "task": "code", "prompt": "def add(a, b):\n    return", "chat": False},
    {"id": "c1", "task": "code", "prompt": "import os\n\ndef list_files(path):\n", "chat": False},
]


def _lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_temperature_mix_is_stable_and_weighted() -> None:
    mix = kd_generation.parse_temperatures({0.0: 2, 0.6: 1, 0.8: 1})
    assert mix == [(0.0, 0.5), (0.6, 0.25), (0.8, 0.25)]
    picks = [kd_generation.assign_temperature(f"kd/x/{i}", mix, seed=0) for i in range(4000)]
    assert picks == [kd_generation.assign_temperature(f"kd/x/{i}", mix, 0) for i in range(4000)]
    share = picks.count(0.0) / len(picks)
    assert 0.46 < share < 0.54 and 0.22 < picks.count(0.8) / len(picks) < 0.28
    assert kd_generation.parse_temperatures(1.0) == [(1.0, 1.0)]
    for bad in ({}, {0.6: 0}, {-1.0: 1}):
        with pytest.raises(ValueError, match="kd temperatures"):
            kd_generation.parse_temperatures(bad)


def test_resume_keeps_rows_and_ids_stable(tiny_target_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "kd.jsonl"
    args = {"max_new_tokens": 6, "batch_size": 3, "temperature": {0.6: 1, 1.0: 1}, "seed": 3}
    first = generate_responses(
        tiny_target_dir, PROMPTS[:4], out, keep_truncated=True, progress=False, **args
    )
    assert first["rows"] + sum(first["drops"].values()) == 4 and first["rows"] >= 2
    before = _lines(out)
    dropped_first = len(_lines(out.with_suffix(".dropped.jsonl")))
    assert first["template"] == "chat" and first["backend"] == "torch"
    second = generate_responses(
        tiny_target_dir, PROMPTS, out, keep_truncated=True, progress=False, **args
    )
    after = _lines(out)
    assert after[: len(before)] == before  # old rows untouched, not regenerated
    assert second["skipped_existing"] == len(before) + dropped_first
    assert len({r["id"] for r in after}) == len(after) == second["rows_in_file"]
    for r in after:
        assert r["temperature"] in (0.6, 1.0)
        assert r["id"] == f"{r['prompt_id']}/t{r['temperature']}/s3"
        assert r["response"].strip() and r["response_tokens"] <= 6 and r["prompt_tokens"] > 0


def test_finish_flags_and_drops_are_counted_and_remembered(
    tiny_target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scripted generations: eos mid-way (kept), no eos (truncated: dropped), eos at once (empty)."""
    ok = [28120, 905, 2, 0, 0]  # "hello world" <|im_end|> then padding
    scripted = [ok, [28120] * 5, [2, 0, 0, 0, 0]]
    calls = []

    def fake(model, seqs, config, pad_id):
        calls.append(len(seqs))
        return scripted[: len(seqs)]

    monkeypatch.setattr(kd_backends, "generate_batch", fake)
    out = tmp_path / "kd.jsonl"
    blank = {"id": "blank", "task": "instructions", "prompt": " \n\t ", "chat": True}
    stats = generate_responses(
        tiny_target_dir,
        [*PROMPTS[:3], blank],
        out,
        max_new_tokens=5,
        batch_size=3,
        progress=False,
    )
    rows = _lines(out)
    assert [r["finish"] for r in rows] == ["eos"] and rows[0]["response_tokens"] == 2
    assert stats["drops"] == {
        "empty_response": 1,
        "truncated": 1,
        "empty_prompt": 1,
    }
    dropped = _lines(out.with_suffix(".dropped.jsonl"))
    assert sorted(d["reason"] for d in dropped) == ["empty_response", "truncated"]
    calls.clear()
    again = generate_responses(
        tiny_target_dir, PROMPTS[:3], out, max_new_tokens=5, batch_size=3, progress=False
    )
    assert calls == [] and again["rows"] == 0 and again["skipped_existing"] == 3
    assert again["drops"] == {"empty_response": 1, "truncated": 1}


def test_failed_rows_are_counted_not_remembered(
    tiny_target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = kd_generation._backend

    class Flaky:
        name = "flaky"

        def __init__(self, inner):
            self.inner = inner

        def generate(self, requests):
            if any(len(r.ids) < 12 for r in requests):  # the shortest prompt always fails
                raise RuntimeError("boom")
            return self.inner.generate(requests)

    monkeypatch.setattr(kd_generation, "_backend", lambda *a, **kw: Flaky(real(*a, **kw)))
    out = tmp_path / "kd.jsonl"
    stats = generate_responses(
        tiny_target_dir,
        PROMPTS,
        out,
        max_new_tokens=4,
        temperature=1.0,
        keep_truncated=True,
        progress=False,
    )
    assert stats["drops"].get("failed", 0) >= 1
    assert "failed" not in {d["reason"] for d in _lines(out.with_suffix(".dropped.jsonl"))}
    assert stats["rows"] + sum(stats["drops"].values()) == len(PROMPTS)


KILL_SCRIPT = """
import sys
from fastdraft_dag.distill.config import KDConfig
from fastdraft_dag.distill.generation import generate_responses
from fastdraft_dag.distill.kd_dataset import build_kd_dataset, task_totals
prompts = [{"id": f"q{i}", "task": "instructions", "prompt": f"Tell me fact number {i}.", "chat": True}
           for i in range(int(sys.argv[3]))]
generate_responses(sys.argv[1], prompts, sys.argv[2], max_new_tokens=24, batch_size=1,
                   temperature=1.0, keep_truncated=True, threads=1, progress=False)
"""


def test_killed_generation_resumes_without_duplicates(
    tiny_target_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "kd.jsonl"
    n = 40
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tiny_target_dir), str(out), str(n)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_lines(out)) < 4 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _lines(out)
    decided_before = len(before) + len(_lines(out.with_suffix(".dropped.jsonl")))
    assert 0 < decided_before < n, "the kill must land mid-generation"
    prompts = [
        {"id": f"q{i}", "task": "instructions", "prompt": f"Tell me fact number {i}.", "chat": True}
        for i in range(n)
    ]
    stats = generate_responses(
        tiny_target_dir,
        prompts,
        out,
        max_new_tokens=24,
        batch_size=1,
        temperature=1.0,
        keep_truncated=True,
        progress=False,
    )
    after = _lines(out)
    assert after[: len(before)] == before
    assert stats["skipped_existing"] == decided_before
    ids = [r["id"] for r in after] + [d["id"] for d in _lines(out.with_suffix(".dropped.jsonl"))]
    assert len(ids) == len(set(ids)) == n


def test_openvino_backend_greedy_matches_torch(tiny_target_dir: Path, tmp_path: Path) -> None:
    """Continuous batching over the fp32 IR answers exactly like PyTorch fp32 under greedy."""
    from fastdraft_dag.openvino.export import export_ir

    ir = tmp_path / "ir"
    export_ir(tiny_target_dir, ir, "fp32")
    common = {"max_new_tokens": 8, "batch_size": 4, "keep_truncated": True, "progress": False}
    ov = generate_responses(
        tiny_target_dir, PROMPTS, tmp_path / "ov.jsonl", backend="openvino", ir_dir=ir, **common
    )
    pt = generate_responses(tiny_target_dir, PROMPTS, tmp_path / "pt.jsonl", dtype="fp32", **common)
    assert ov["backend"] == "openvino" and ov["rows"] == pt["rows"] > 0
    by_id = {r["id"]: r["response"] for r in _lines(tmp_path / "pt.jsonl")}
    same = [r["response"] == by_id.get(r["id"]) for r in _lines(tmp_path / "ov.jsonl")]
    assert all(same)
    sampled = generate_responses(
        tiny_target_dir,
        PROMPTS,
        tmp_path / "ovs.jsonl",
        backend="openvino",
        ir_dir=ir,
        temperature={0.6: 1, 1.0: 1},
        **common,
    )
    assert sampled["rows"] + sum(sampled["drops"].values()) == len(PROMPTS)
    with pytest.raises(FileNotFoundError, match="openvino_model.xml"):
        generate_responses(
            tiny_target_dir,
            PROMPTS,
            tmp_path / "x.jsonl",
            backend="openvino",
            ir_dir=tmp_path / "nowhere",
            **common,
        )
    with pytest.raises(ValueError, match="KD backend 'tpu'"):
        generate_responses(tiny_target_dir, PROMPTS, tmp_path / "y.jsonl", backend="tpu", **common)


def test_resolve_dtype() -> None:
    assert kd_backends.resolve_dtype("auto") in ("bf16", "fp32")
    assert kd_backends.resolve_dtype("fp32") == "fp32"
    with pytest.raises(ValueError, match="float8"):
        kd_backends.resolve_dtype("float8")


def test_kd_dataset_runner_without_dagster(tiny_target_dir: Path, tmp_path: Path) -> None:
    """The asset's runner: disjoint prompts fitted to the target, answered, counted per task."""
    cfg = KDConfig(n_instruction=2, n_code=2, max_new_tokens=4, batch_size=2, backend="torch",
                   keep_truncated=True, temperatures={1.0: 1.0}, dtype="fp32")  # fmt: skip
    metrics = build_kd_dataset(tiny_target_dir, "tiny", cfg, (), 1, tmp_path)
    rows = _lines(tmp_path / "kd.jsonl")
    assert metrics["prompts"] == 4 and len(rows) == sum(metrics["by_task"].values())
    assert set(metrics["by_task"]) <= {"instructions", "code"} and metrics["template"] == "chat"
    assert sum(t["rows"] for t in task_totals(rows)) == len(rows)
    assert not (tmp_path / "_target_ir").exists()

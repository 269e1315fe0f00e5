"""Known-answer tests for the SD metric formulas and the offline teacher-forced evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastdraft_dag.evaluation import metrics


def test_tau_iid_known_answers() -> None:
    assert metrics.tau_iid(0.5, 2) == pytest.approx(1.75)
    assert metrics.tau_iid(1.0, 4) == 5.0
    assert metrics.tau_iid(0.0, 3) == 1.0


def test_mbsu_and_expected_speedup() -> None:
    assert metrics.mbsu(3.0, 4, 0.25) == pytest.approx(1.5)
    assert metrics.expected_speedup(0.5, 2, 0.1) == pytest.approx(1.75 / 1.2)


def test_greedy_and_sampled_acceptance() -> None:
    assert metrics.greedy_acceptance([1, 2, 3, 4], [1, 0, 3, 0]) == 0.5
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    assert metrics.sampled_acceptance(p, p) == pytest.approx(1.0)
    disjoint = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert metrics.sampled_acceptance(np.array([[1.0, 0, 0], [0, 0, 1.0]]), disjoint) == 0.0
    q = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    assert metrics.sampled_acceptance(p, q) == pytest.approx(0.75)


def test_tau_simulated_hand_made() -> None:
    # k=3: [T,T,F] -> 3 tokens; [T,T,T,(bonus T)] -> 4 tokens; [F] -> 1 token: 8 tokens / 3 steps.
    seq = [True, True, False, True, True, True, True, False]
    assert metrics.tau_simulated([seq], 3) == pytest.approx(8 / 3)
    assert metrics.tau_simulated([[True] * 8], 3) == pytest.approx(4.0)
    assert metrics.tau_simulated([[False] * 5], 3) == pytest.approx(1.0)
    # The last step is cut at the sequence end: 5 tokens = one 4-token step + 1.
    assert metrics.tau_simulated([[True] * 5], 3) == pytest.approx(2.5)
    assert metrics.acceptance_by_position([seq], 3) == pytest.approx([2 / 3, 1.0, 0.5])


def _count(model_dir: Path) -> tuple[int, int]:
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), framework="numpy") as f:
        shapes = {n: f.get_slice(n).get_shape() for n in f.keys()}  # noqa: SIM118
    total = sum(int(np.prod(s)) for s in shapes.values())
    return total, int(np.prod(shapes["model.embed_tokens.weight"]))


def test_param_bytes_ratio_by_hand(tiny_target_dir: Path, tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(tiny_target_dir)
    config.tie_word_embeddings = False
    untied = tmp_path / "untied"
    LlamaForCausalLM(config).save_pretrained(untied)
    tied_total, embed = _count(tiny_target_dir)  # tied: embedding counted once, as LM head
    untied_total, _ = _count(untied)
    assert untied_total == tied_total + embed
    # Untied: drop the input embedding, keep lm_head -> same read count as the tied model.
    assert metrics.params_read_per_token(tiny_target_dir) == tied_total
    assert metrics.params_read_per_token(untied) == untied_total - embed
    assert metrics.param_bytes_ratio(untied, tiny_target_dir) == pytest.approx(1.0)
    assert metrics.param_bytes_ratio(tiny_target_dir, untied, 1.0, 2.0) == pytest.approx(0.5)


PROMPTS = [
    {"id": "a", "task": "chat", "prompt": "What is the capital of France?", "chat": True},
    {"id": "b", "task": "chat", "prompt": "Write a haiku about rain.", "chat": True},
    {"id": "c", "task": "code", "prompt": "def fibonacci(n):\n", "chat": False},
]


def test_render_prompt_uses_chat_template(tokenizer) -> None:
    from fastdraft_dag.prompts.render import render_prompt

    chat = render_prompt(tokenizer, PROMPTS[0])
    assert PROMPTS[0]["prompt"] in chat and chat != PROMPTS[0]["prompt"]
    assert render_prompt(tokenizer, PROMPTS[2]) == PROMPTS[2]["prompt"]


@pytest.fixture(scope="module")
def tiny_draft_dir(target_dir: Path, tmp_path_factory) -> Path:
    from fastdraft_dag.targets.tiny import build_tiny_target

    return build_tiny_target(target_dir, tmp_path_factory.mktemp("draft") / "draft", seed=1)


def test_evaluate_offline_tiny(tiny_target_dir: Path, tiny_draft_dir: Path) -> None:
    from fastdraft_dag.evaluation.offline import OfflineJob, evaluate_offline

    job = OfflineJob(tiny_target_dir, tiny_draft_dir, prompts=PROMPTS, max_new_tokens=12, ks=[1, 3])
    rows = evaluate_offline(job)
    assert {(r["task"], r["k"]) for r in rows} == {
        (t, k) for t in ("chat", "code", "all") for k in (1, 3)
    }
    for r in rows:
        assert 0.0 <= r["alpha_greedy"] <= 1.0 and 0.0 <= r["alpha_sampled"] <= 1.0
        assert 1.0 <= r["tau_sim"] <= r["k"] + 1 and 1.0 <= r["tau_iid"] <= r["k"] + 1
        assert r["mbsu"] == pytest.approx(r["tau_sim"] / (r["k"] * r["r"] + 1))
        assert r["n_tokens"] > 0 and len(r["acceptance_by_position"]) == r["k"]
    assert [r["n_prompts"] for r in rows if r["task"] == "all"] == [3, 3]


def test_target_as_own_draft_accepts_everything(tiny_target_dir: Path) -> None:
    from fastdraft_dag.evaluation.offline import OfflineJob, evaluate_offline

    job = OfflineJob(
        tiny_target_dir, tiny_target_dir, prompts=PROMPTS[:2], max_new_tokens=10, ks=[3]
    )
    rows = evaluate_offline(job)
    for r in rows:
        assert r["alpha_greedy"] == 1.0
        assert r["alpha_sampled"] == pytest.approx(1.0, abs=1e-5)
        assert r["tau_sim"] > 3.0 and r["r"] == 1.0

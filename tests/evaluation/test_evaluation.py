"""Evaluation at production quality: offline metrics per precision, IR scoring, k choice, release.

Real tiny torch models, a real fp32 OpenVINO IR, real DuckDB files; hand-computed answers for
every formula.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastdraft_dag.evaluation import metrics
from fastdraft_dag.evaluation import results as bench_results
from fastdraft_dag.evaluation.modes import choose_mode
from fastdraft_dag.evaluation.offline import draft_r, rows_by_task
from fastdraft_dag.evaluation.quality import quantized_acceptance_losses
from fastdraft_dag.openvino.ir_scoring import IRScorer, bytes_per_param
from fastdraft_dag.reporting import plots

PROMPTS = [
    {"id": "a", "task": "chat", "prompt": "What is the capital of France?", "chat": True},
    {"id": "b", "task": "chat", "prompt": "Write a haiku about rain.", "chat": True},
    {"id": "c", "task": "code", "prompt": "def fibonacci(n):\n", "chat": False},
]


@pytest.fixture(scope="module")
def draft_dir(target_dir: Path, tmp_path_factory) -> Path:
    from fastdraft_dag.targets.tiny import build_tiny_target

    return build_tiny_target(target_dir, tmp_path_factory.mktemp("draft") / "draft", seed=1)


@pytest.fixture(scope="module")
def draft_ir(draft_dir: Path, tmp_path_factory) -> Path:
    from fastdraft_dag.openvino.export import export_ir

    out = tmp_path_factory.mktemp("ir") / "draft-fp32"
    export_ir(draft_dir, out, "fp32")
    return out


# ---------------------------------------------------------------- metrics by precision


def test_bytes_per_param_and_r_per_precision(tiny_target_dir: Path, draft_dir: Path) -> None:
    assert [bytes_per_param(p) for p in ("torch-fp32", "fp16", "int8", "int4")] == [4, 2, 1, 0.5]
    with pytest.raises(ValueError, match="fp8"):
        bytes_per_param("fp8")
    # Same architecture: r is the bytes-per-parameter ratio of the two precisions.
    ratio = metrics.params_read_per_token(draft_dir) / metrics.params_read_per_token(
        tiny_target_dir
    )
    assert ratio == pytest.approx(1.0)
    assert draft_r(draft_dir, tiny_target_dir, "torch-fp32", "fp16") == pytest.approx(2.0)
    assert draft_r(draft_dir, tiny_target_dir, "int4", "int8") == pytest.approx(0.5)
    assert draft_r(draft_dir, tiny_target_dir, "int8", "int4") == pytest.approx(2.0)


def test_rows_by_task_hand_made() -> None:
    scored = {
        "code": [{"matches": [True, True, False], "overlaps": [0.9, 0.8, 0.1]}],
        "chat": [{"matches": [False, True], "overlaps": [0.2, 0.6]}],
    }
    rows = rows_by_task(scored, [1, 2], 0.25, "int8")
    by = {(r["task"], r["k"]): r for r in rows}
    assert set(by) == {(t, k) for t in ("chat", "code", "all") for k in (1, 2)}
    assert {r["precision"] for r in rows} == {"int8"}
    assert by[("code", 1)]["alpha_greedy"] == pytest.approx(2 / 3)
    assert by[("all", 1)]["alpha_greedy"] == pytest.approx(3 / 5)
    assert by[("all", 1)]["alpha_sampled"] == pytest.approx(2.6 / 5)
    # code, k=2: one step takes T,T (+ the bonus would be position 2, the F): 3 tokens / 1 step.
    assert by[("code", 2)]["tau_sim"] == pytest.approx(3.0)
    assert by[("code", 2)]["mbsu"] == pytest.approx(3.0 / (2 * 0.25 + 1))
    # chat, k=1: [F] -> 1 token, [T + bonus] -> 1 token cut at the end: 2 tokens / 2 steps.
    assert by[("chat", 1)]["tau_sim"] == pytest.approx(1.0)
    assert by[("all", 2)]["n_prompts"] == 2 and by[("all", 2)]["n_tokens"] == 5


# ---------------------------------------------------------------- IR scoring


def test_ir_scoring_matches_pytorch(draft_dir: Path, draft_ir: Path) -> None:
    import torch

    from fastdraft_dag.evaluation.offline import _score, load_fp32_model

    model = load_fp32_model(draft_dir)
    scorer = IRScorer(draft_ir, threads=1)
    seqs = [[1, 19556, 665, 28, 957, 1462, 314, 55, 66], [1, 504, 3458, 30, 2000, 17]]
    for seq in [*seqs, seqs[0]]:  # the repeat shows the stateful request is reset each time
        with torch.no_grad():
            t_arg, p = _score(model, seq, 3)
        ir_arg, q = scorer(seq, 3)
        assert ir_arg.tolist() == t_arg.tolist()
        assert q.shape == p.shape == (len(seq) - 3, p.shape[1])
        np.testing.assert_allclose(q, p, atol=1e-5)
        assert q.sum(axis=-1) == pytest.approx(np.ones(len(seq) - 3), abs=1e-5)


def test_evaluate_offline_scores_every_precision_on_the_same_tokens(
    tiny_target_dir: Path, draft_dir: Path, draft_ir: Path
) -> None:
    from fastdraft_dag.evaluation.offline import OfflineJob, evaluate_offline

    job = OfflineJob(
        tiny_target_dir,
        draft_dir,
        prompts=PROMPTS,
        max_new_tokens=10,
        ks=[1, 3],
        threads=1,
        draft_irs={"fp32": draft_ir},
        target_precision="int8",
    )
    rows = evaluate_offline(job)
    assert {r["precision"] for r in rows} == {"torch-fp32", "fp32"}
    torch_rows = {(r["task"], r["k"]): r for r in rows if r["precision"] == "torch-fp32"}
    ir_rows = {(r["task"], r["k"]): r for r in rows if r["precision"] == "fp32"}
    assert (
        set(torch_rows) == set(ir_rows) == {(t, k) for t in ("chat", "code", "all") for k in (1, 3)}
    )
    for key, t in torch_rows.items():
        ir = ir_rows[key]
        # An fp32 IR is the same model: same greedy matches, near-identical distributions.
        assert ir["alpha_greedy"] == t["alpha_greedy"] and ir["tau_sim"] == t["tau_sim"]
        assert ir["acceptance_by_position"] == t["acceptance_by_position"]
        assert ir["alpha_sampled"] == pytest.approx(t["alpha_sampled"], abs=1e-4)
        assert ir["n_tokens"] == t["n_tokens"] > 0
        # Same architecture, 4-byte draft against a 1-byte (int8) target: r = 4.
        assert t["r"] == pytest.approx(4.0) and ir["r"] == pytest.approx(4.0)
        assert t["mbsu"] == pytest.approx(t["tau_sim"] / (t["k"] * 4.0 + 1))


# ---------------------------------------------------------------- bad input


def test_missing_ir_is_named(tiny_target_dir: Path, draft_dir: Path, tmp_path: Path) -> None:
    from fastdraft_dag.evaluation.offline import OfflineJob, evaluate_offline

    missing = tmp_path / "draft-int8"
    with pytest.raises(FileNotFoundError, match=str(missing / "openvino_model.xml")):
        evaluate_offline(
            OfflineJob(
                tiny_target_dir,
                draft_dir,
                prompts=PROMPTS,
                max_new_tokens=4,
                ks=[1],
                draft_irs={"int8": missing},
            )
        )
    with pytest.raises(FileNotFoundError, match=str(missing)):
        IRScorer(missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        bench_results.write_release(tmp_path / "release", missing, choose_mode(LIVE), "card")
    assert not (tmp_path / "release").exists()


def test_draft_with_another_tokenizer_is_refused_naming_both(
    tiny_target_dir: Path, draft_dir: Path, tmp_path: Path
) -> None:
    from fastdraft_dag.evaluation.offline import OfflineJob, evaluate_offline

    other = tmp_path / "other-draft"
    shutil.copytree(draft_dir, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    tok["added_tokens"][0]["content"] = "<|not-the-targets|>"
    (other / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ValueError, match="added tokens") as err:
        evaluate_offline(
            OfflineJob(tiny_target_dir, other, prompts=PROMPTS, max_new_tokens=4, ks=[1])
        )
    assert str(other) in str(err.value) and str(tiny_target_dir) in str(err.value)


def test_empty_prompt_set_is_refused(tiny_target_dir: Path, draft_dir: Path) -> None:
    from fastdraft_dag.evaluation.offline import OfflineJob, evaluate_offline

    with pytest.raises(ValueError, match="prompt set is empty: bench.prompts_per_family=0"):
        bench_results.bench_prompt_set(0, ())
    with pytest.raises(ValueError, match="bench.sd_prompts_per_family: -1"):
        bench_results.bench_prompt_set(-1, (), setting="bench.sd_prompts_per_family")
    with pytest.raises(ValueError, match="prompt set is empty"):
        evaluate_offline(
            OfflineJob(tiny_target_dir, draft_dir, prompts=[], max_new_tokens=4, ks=[1])
        )


def test_user_prompt_files(tmp_path: Path) -> None:
    good = tmp_path / "mine.jsonl"
    lines = [
        {"id": "l1", "task": "legal", "prompt": "Define tort."},
        {"id": "l2", "task": "legal", "prompt": "Define estoppel.", "chat": False},
        {"id": "l2", "task": "legal", "prompt": "duplicate id"},
        {"id": "x", "task": "legal"},
    ]
    good.write_text("\n".join([*map(json.dumps, lines), "{not json"]) + "\n")
    rows, malformed = bench_results.bench_prompt_set(1, [str(good)])
    assert [r["task"] for r in rows] == [
        "code",
        "instructions",
        "summarization",
        "text_completion",
        "legal",
        "legal",
    ]
    assert malformed == {str(good): 3}
    assert [r["chat"] for r in rows[-2:]] == [True, False]
    capped, _ = bench_results.bench_prompt_set(0, [good], per_user_task=1)
    assert [r["id"] for r in capped] == ["l1"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\nnot json\n')
    with pytest.raises(ValueError, match=str(bad)):
        bench_results.bench_prompt_set(1, [bad])
    with pytest.raises(ValueError, match="missing.jsonl"):
        bench_results.bench_prompt_set(1, [tmp_path / "missing.jsonl"])


def test_unavailable_device_message_lists_available_devices() -> None:
    from fastdraft_dag.resources.core_ultra import CoreUltraResource

    available = CoreUltraResource().available_devices()
    missing = [d for d in ("GPU", "NPU") if not any(a.startswith(d) for a in available)]
    if not missing:
        pytest.skip("every OpenVINO device kind is present on this machine")
    with pytest.raises(RuntimeError) as err:
        CoreUltraResource(device=missing[0]).validate()
    assert missing[0] in str(err.value) and str(available) in str(err.value)
    with pytest.raises(ValueError, match="TPU"):
        CoreUltraResource(device="TPU").validate()


# ---------------------------------------------------------------- quantization warning


def _alpha_rows(values: dict[tuple[str, str], float]) -> list[dict]:
    return [
        {"precision": p, "task": t, "k": k, "alpha_greedy": a}
        for (p, t), a in values.items()
        for k in (1, 2)
    ]


def test_quantized_draft_warning_names_task_and_precision() -> None:
    rows = _alpha_rows(
        {
            ("torch-fp32", "code"): 0.70,
            ("fp16", "code"): 0.60,
            ("int8", "code"): 0.57,  # loses 0.03: warns
            ("int4", "code"): 0.59,  # loses 0.01: fine
            ("fp16", "chat"): 0.50,
            ("int8", "chat"): 0.49,
            ("int4", "chat"): 0.52,  # gains
        }
    )
    q = quantized_acceptance_losses(rows, 0.02)
    assert q["reference"] == "fp16"
    assert q["failures"] == [
        {"precision": "int8", "task": "code", "reference": 0.6, "alpha_greedy": 0.57, "loss": 0.03}
    ]
    assert {(x["precision"], x["task"]): x["loss"] for x in q["losses"]} == {
        ("int4", "chat"): -0.02,
        ("int4", "code"): 0.01,
        ("int8", "chat"): 0.01,
        ("int8", "code"): 0.03,
    }
    assert quantized_acceptance_losses(rows, 0.05)["failures"] == []


def test_quantized_draft_warning_falls_back_to_torch_fp32() -> None:
    rows = _alpha_rows({("torch-fp32", "code"): 0.70, ("int4", "code"): 0.67})
    q = quantized_acceptance_losses(rows)
    assert q["reference"] == "torch-fp32"
    assert [(x["precision"], x["task"], x["loss"]) for x in q["failures"]] == [
        ("int4", "code", 0.03)
    ]
    no_quant = quantized_acceptance_losses(_alpha_rows({("torch-fp32", "code"): 0.7}))
    assert no_quant["losses"] == [] and no_quant["failures"] == []


# ---------------------------------------------------------------- k choice and release

LIVE = [
    {"mode": "plain", "draft": "", "k": None, "task": "all", "tok_s": 50.0, "speedup": 1.0},
    {"mode": "plain", "draft": "", "k": None, "task": "code", "tok_s": 40.0, "speedup": 1.0},
    {"mode": "sd", "draft": "fp16", "k": 2, "task": "all", "tok_s": 80.0, "speedup": 1.6},
    {"mode": "sd", "draft": "fp16", "k": 3, "task": "all", "tok_s": 90.0, "speedup": 1.8},
    {"mode": "sd", "draft": "fp16", "k": 4, "task": "all", "tok_s": 90.0, "speedup": 1.8},
    {"mode": "sd", "draft": "fp16", "k": 5, "task": "code", "tok_s": 200.0, "speedup": 5.0},
    {"mode": "prompt_lookup", "draft": "", "k": 3, "task": "all", "tok_s": 500.0, "speedup": 10},
]


def test_wallclock_db_rows_keep_plain_and_sd_columns() -> None:
    rows = bench_results.wallclock_db_rows(LIVE, "fp16", "int8")
    by = {(r["mode"], r["k"], r["task"]): r for r in rows}
    assert by[("sd", 3, "all")]["plain_tok_s"] == 50.0 and by[("sd", 3, "all")]["sd_tok_s"] == 90
    assert by[("sd", 5, "code")]["plain_tok_s"] == 40.0
    assert by[("plain", None, "all")]["sd_tok_s"] is None
    assert by[("sd", 3, "all")]["draft_precision"] == "fp16"
    assert by[("prompt_lookup", 3, "all")]["draft_precision"] is None
    assert {r["target_precision"] for r in rows} == {"int8"}


def test_wallclock_rows_land_in_duckdb_and_previous_acceptance_is_fp32(tmp_path: Path) -> None:
    from fastdraft_dag.storage.tables import previous_acceptance, query, record_rows

    db = tmp_path / "bench.duckdb"
    rows = bench_results.wallclock_db_rows(LIVE, "fp16", "int8")
    assert record_rows(db, "benchmark_wallclock", "v1", rows, "run-1") == len(LIVE)
    got = query(db, "SELECT mode, k, tok_s, plain_tok_s FROM benchmark_wallclock WHERE k = 3")
    assert sorted((r["mode"], r["tok_s"], r["plain_tok_s"]) for r in got) == [
        ("prompt_lookup", 500.0, 50.0),
        ("sd", 90.0, 50.0),
    ]
    offline = [
        {"target": "t", "task": "code", "k": 1, "alpha_greedy": 0.6, "precision": "torch-fp32"},
        {"target": "t", "task": "code", "k": 1, "alpha_greedy": 0.2, "precision": "int4"},
    ]
    record_rows(db, "benchmark_offline", "old", offline, "run-1")
    assert previous_acceptance(db, "t", "new") == ("old", {"code": pytest.approx(0.6)})
    assert previous_acceptance(db, "t", "new", "int4") == ("old", {"code": pytest.approx(0.2)})


def test_set_num_assistant_tokens_creates_or_updates(tmp_path: Path) -> None:
    assert bench_results.set_num_assistant_tokens(tmp_path, 4) == {"num_assistant_tokens": 4}
    (tmp_path / "generation_config.json").write_text(
        '{"eos_token_id": 2, "num_assistant_tokens": 5}'
    )
    bench_results.set_num_assistant_tokens(tmp_path, 3)
    config = json.loads((tmp_path / "generation_config.json").read_text())
    assert config == {"eos_token_id": 2, "num_assistant_tokens": 3}
    with pytest.raises(ValueError, match="num_assistant_tokens"):
        bench_results.set_num_assistant_tokens(tmp_path, 0)


def _offline_rows() -> list[dict]:
    scored = {
        "code": [{"matches": [True, True, False, True], "overlaps": [0.9, 0.8, 0.1, 0.7]}],
        "chat": [{"matches": [False, True, True], "overlaps": [0.2, 0.6, 0.5]}],
    }
    return [
        *rows_by_task(scored, [1, 2, 3], 0.1, "torch-fp32"),
        *rows_by_task(scored, [1, 2, 3], 0.05, "fp16"),
    ]


def test_plots_card_and_release(tmp_path: Path) -> None:
    from fastdraft_dag.reporting.model_card import release_card
    from fastdraft_dag.reporting.tables import render_benchmark

    offline = _offline_rows()
    pos = plots.acceptance_by_position_plot(offline, "fp16", 3, tmp_path / "pos.png")
    speed = plots.speedup_vs_k_plot(offline, LIVE, "fp16", tmp_path / "speed.png")
    for png in (pos, speed):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert plots.markdown_image(pos, "acc").startswith("![acc](data:image/png;base64,iVBOR")
    with pytest.raises(ValueError, match="int4"):
        plots.acceptance_by_position_plot(offline, "int4", 3, tmp_path / "none.png")
    both = plots.benchmark_plots(tmp_path, offline, LIVE, "int8")  # int8 unscored: fp32 MBSU
    assert sorted(p.name for p in both.values()) == sorted(plots.BENCHMARK_PLOTS.values())
    assert all(p.stat().st_size > 5000 for p in both.values())

    choice = choose_mode(LIVE)  # prompt lookup, 10x plain, beats every SD k
    tables = {
        "offline": offline,
        "wallclock": LIVE,
        "best_k": 3,
        "device": "CPU",
        "choice": choice.to_dict(),
    }
    summary = render_benchmark(tables)
    assert "| precision | task | k |" in summary and "| fp16 | code | 3 |" in summary
    assert "| prompt_lookup |" in summary and "Best fixed SD k on CPU: **3**" in summary
    assert "Release mode on CPU: **prompt_lookup k=3**" in summary
    card = release_card(
        target="org/model",
        draft_precision="fp16",
        choice=choice.to_dict(),
        device="CPU",
        summary_md=summary,
        images={"speedup vs k": "speed.png"},
        lineage={"aligned_draft": "abc"},
    )
    assert "Recommended: prompt lookup decoding" in card and "![speedup vs k](speed.png)" in card

    ir = tmp_path / "draft-fp16"
    ir.mkdir()
    (ir / "openvino_model.xml").write_text("<net/>")
    release = bench_results.write_release(
        tmp_path / "release", ir, choice, card, {"speed.png": speed}
    )
    assert (release / "README.md").read_text() == card
    assert (release / "draft-ir" / "openvino_model.xml").read_text() == "<net/>"
    assert not (release / "draft-ir" / "generation_config.json").exists(), "SD did not win"
    assert json.loads((release / "release.json").read_text())["chosen"]["mode"] == "prompt_lookup"
    assert (release / "speed.png").read_bytes() == speed.read_bytes()

    sd_wins = choose_mode([r for r in LIVE if r["mode"] != "prompt_lookup"])
    again = bench_results.write_release(tmp_path / "release", ir, sd_wins, card)
    generation = json.loads((again / "draft-ir" / "generation_config.json").read_text())
    assert generation == {"num_assistant_tokens": 3}, "fastest pooled SD k, ties to smaller k"
    assert not (ir / "generation_config.json").exists(), "the source IR must stay untouched"


# ---------------------------------------------------------------- one renderer, one device


class _FakeGenai:
    """Stands in for openvino_genai: records the prompt ids each mode is fed, echoes 3 tokens."""

    def __init__(self) -> None:
        self.fed: list[list[int]] = []

    def get_generation_config(self):
        from types import SimpleNamespace

        return SimpleNamespace()

    def generate(self, tensor, config):
        from types import SimpleNamespace

        self.fed.append([int(t) for t in np.asarray(tensor.data)[0]])
        mean = SimpleNamespace(mean=1.0)
        metrics = SimpleNamespace(
            get_ttft=lambda: mean,
            get_tpot=lambda: mean,
            raw_metrics=SimpleNamespace(m_batch_sizes=[1, 1, 1]),
        )
        return SimpleNamespace(tokens=[[5, 6, 7]], perf_metrics=metrics)


@pytest.mark.parametrize("chat", [True, False])
def test_live_benchmark_feeds_the_ids_the_draft_is_trained_on(
    target_dir: Path, tmp_path: Path, monkeypatch, chat: bool
) -> None:
    """Same prompt row -> same ids in KD/alignment training and in the live benchmark."""
    from transformers import AutoTokenizer

    from fastdraft_dag.distill.kd_rows import IGNORE, build_sft_arrays, encode_row, end_of_turn_ids
    from fastdraft_dag.evaluation import live

    row = {
        "id": "p",
        "task": "code",
        "prompt": "Write a function that adds two numbers.",
        "chat": chat,
    }
    pipes: list[_FakeGenai] = []

    def fake_pipeline(*args, **kwargs):
        pipes.append(_FakeGenai())
        return pipes[-1]

    monkeypatch.setattr(live, "make_pipeline", fake_pipeline)
    for name in ("target", "draft"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "openvino_model.xml").write_text("<net/>")
    job = live.LiveJob(
        tmp_path / "target",
        tmp_path / "draft",
        prompts=[row],
        tokenizer_dir=target_dir,
        max_new_tokens=3,
        ks=[2],
        confidence_thresholds=[0.3],
    )
    live.benchmark_live(job)
    fed = {tuple(ids) for pipe in pipes for ids in pipe.fed}
    assert len(fed) == 1, "every mode, warm-up included, gets the same ids"
    benchmark_ids = list(fed.pop())

    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    eos = end_of_turn_ids(target_dir, tokenizer)[0]
    kd_row = {**row, "response": "def add(a, b):\n    return a + b", "finish": "eos"}
    ids, labels, _ = encode_row(tokenizer, kd_row, eos, 512)
    assert ids[: labels.count(IGNORE)] == benchmark_ids
    arrays, _ = build_sft_arrays([kd_row], target_dir, 512, val_fraction=0.0)
    mask, lab = arrays["train_attention_mask"][0], arrays["train_labels"][0]
    prompt_part = arrays["train_input_ids"][0][(lab == IGNORE) & (mask == 1)]
    assert prompt_part.tolist() == benchmark_ids
    rendered = tokenizer.decode(benchmark_ids)
    assert ("<|im_start|>assistant" in rendered) is chat, "chat rows go through the template"


def test_offline_ir_scoring_compiles_on_the_resource_device(
    tiny_target_dir: Path, draft_dir: Path, draft_ir: Path, monkeypatch
) -> None:
    from fastdraft_dag.evaluation import offline
    from fastdraft_dag.resources.core_ultra import CoreUltraResource

    devices: list[str] = []

    class Stop(Exception):
        pass

    def recording_scorer(ir_dir, device="CPU", threads=None):
        devices.append(device)
        raise Stop

    monkeypatch.setattr(offline, "IRScorer", recording_scorer)
    resource = CoreUltraResource(device="AUTO")
    job = offline.OfflineJob(
        tiny_target_dir,
        draft_dir,
        prompts=PROMPTS,
        max_new_tokens=4,
        ks=[1],
        threads=1,
        draft_irs={"fp32": draft_ir},
        target_precision="fp32",
    )
    with pytest.raises(Stop):
        resource.evaluate_offline(job)
    assert devices == ["AUTO"]
    with pytest.raises(ValueError, match="'TPU'"):
        offline.evaluate_offline(job, device="TPU")
    assert devices == ["AUTO"], "a bad device is refused before any model loads"


def test_export_runs_through_the_exporter_and_checks_on_the_device(
    tmp_path: Path, monkeypatch
) -> None:
    from fastdraft_dag.openvino import export

    calls: list[tuple] = []
    monkeypatch.setattr(
        export,
        "check_ir_logits",
        lambda src, ir, probe, tol, device: (
            calls.append(("check", ir.name, device)) or {"ok": True}
        ),
    )

    def exporter(src: Path, out: Path, fmt: str) -> dict:
        calls.append(("export", out.name, fmt))
        return {"ir_bytes": 2e6, "seconds": 1.0}

    jobs = export.plan_exports(
        tmp_path / "draft", tmp_path / "target", ("fp16", "int8"), "int4", tmp_path / "ref", "int8"
    )
    assert [j.name for j in jobs] == [
        "draft-fp16",
        "draft-int8",
        "target-int4",
        "reference-draft-int8",
    ]
    result = export.run_export(jobs, tmp_path, [1, 2], exporter, device="GPU")
    assert result.ok and [r["mb"] for r in result.rows] == [2.0] * 4
    assert calls[:2] == [("export", "draft-fp16", "fp16"), ("check", "draft-fp16", "GPU")]
    with pytest.raises(ValueError, match="fp8"):
        export.plan_exports(tmp_path, tmp_path, ("fp8",), "int4")

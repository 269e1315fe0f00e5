"""Live OpenVINO GenAI benchmark on tiny random IRs: every mode, agreement, k choice, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fastdraft_dag.evaluation.live import LiveJob, benchmark_live, choose_k, find_divergences
from fastdraft_dag.openvino.genai import IR_FILE, check_device, first_divergence

PROMPTS = [
    {"id": "a", "task": "chat", "prompt": "What is the capital of France?", "chat": True},
    {"id": "b", "task": "chat", "prompt": "Write a haiku about rain.", "chat": True},
    {"id": "c", "task": "code", "prompt": "def fibonacci(n):\n    return fib", "chat": False},
]
KS = [1, 2, 4]
THRESHOLDS = [0.4]
MAX_NEW = 16
ROW_KEYS = {
    "mode", "draft", "k", "confidence_threshold", "task", "n_prompts", "tokens", "tok_s",
    "speedup", "speedup_ci_low", "speedup_ci_high", "tau_measured",
    "accepted_per_step", "ttft_ms", "tpot_ms", "agreement", "first_divergence",
    "divergence_margin", "device", "precision_hint", "threads", "max_new_tokens",
}  # fmt: skip


@pytest.fixture(scope="module")
def irs(tiny_target_dir: Path, target_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """Tiny target as fp32 IR, a second tiny model (seed 1) as the int8 draft IR."""
    from fastdraft_dag.openvino.export import export_ir
    from fastdraft_dag.targets.tiny import build_tiny_target

    root = tmp_path_factory.mktemp("sd-ir")
    draft_hf = build_tiny_target(target_dir, root / "draft-hf", seed=1)
    export_ir(tiny_target_dir, root / "target-fp32", "fp32")
    export_ir(draft_hf, root / "draft-int8", "int8")
    return {"target": root / "target-fp32", "draft": root / "draft-int8"}


@pytest.fixture(scope="module")
def live(irs: dict[str, Path], tiny_target_dir: Path) -> dict:
    """Every mode once, through the resource; the target IR doubles as the reference draft."""
    from fastdraft_dag.resources.core_ultra import CoreUltraResource

    resource = CoreUltraResource(device="CPU", precision_hint="f32", threads=1)
    job = LiveJob(
        irs["target"],
        irs["draft"],
        prompts=PROMPTS,
        tokenizer_dir=tiny_target_dir,
        max_new_tokens=MAX_NEW,
        ks=KS,
        margin_model_dir=tiny_target_dir,
        prompt_lookup=True,
        reference_draft_ir=irs["target"],
        confidence_thresholds=THRESHOLDS,
    )
    return resource.benchmark_live(job)


def test_live_rows_cover_every_mode_and_task(live: dict) -> None:
    rows = live["rows"]
    runs = {(r["mode"], r["k"], r["confidence_threshold"]) for r in rows}
    best = live["best_k"]
    expected = {("plain", None, None), *(("sd", k, None) for k in KS)}
    expected |= {("sd", None, t) for t in THRESHOLDS}  # dynamic draft length
    expected |= {("prompt_lookup", k, None) for k in KS}  # prompt lookup at its own best k
    assert runs == expected | {("reference_draft", best, None)}
    for r in rows:
        assert set(r) >= ROW_KEYS, ROW_KEYS - set(r)
        assert (r["device"], r["precision_hint"], r["threads"]) == ("CPU", "f32", 1)
        assert r["max_new_tokens"] == MAX_NEW
        assert r["tok_s"] > 0 and r["ttft_ms"] > 0 and r["tpot_ms"] > 0
        assert (r["draft"] == "") == (r["mode"] == "plain")
    for run in runs:
        mine = {r["task"]: r for r in rows if (r["mode"], r["k"], r["confidence_threshold"]) == run}
        assert list(mine) == ["chat", "code", "all"]
        assert mine["all"]["n_prompts"] == 3 and mine["chat"]["n_prompts"] == 2
        assert mine["all"]["tokens"] == mine["chat"]["tokens"] + mine["code"]["tokens"]
    labels = {r["mode"]: r["draft"] for r in rows}
    assert (labels["sd"], labels["reference_draft"]) == ("draft-int8", "target-fp32")


def test_greedy_sd_equals_plain_for_every_mode(live: dict) -> None:
    """Tiny model, f32 hint: drafted decoding must reproduce plain decoding token for token."""
    assert live["divergences"] == []
    for r in live["rows"]:
        assert r["agreement"] == 1.0, r
        assert r["first_divergence"] is None and r["divergence_margin"] is None


def test_speedup_tau_and_acceptance_are_consistent(live: dict) -> None:
    rows = live["rows"]
    plain = {r["task"]: r for r in rows if r["mode"] == "plain"}
    # plain ran before the drafted phases and after each (sd, prompt lookup, reference draft)
    assert len(live["plain_passes"]) == 4
    for r in rows:
        # each mode against the plain passes run beside it, not one plain pass for the whole run
        assert r["speedup"] == pytest.approx(r["tok_s"] / r["plain_tok_s"])
        assert r["plain_spread"] >= 0.0
        assert plain[r["task"]]["tok_s"] == pytest.approx(plain[r["task"]]["plain_tok_s"])
        if r["mode"] == "plain":
            assert r["tau_measured"] == 1.0 and r["accepted_per_step"] is None
            continue
        most = r["k"] if r["k"] is not None else MAX_NEW  # a threshold has no fixed k
        assert r["tau_measured"] is not None and 1.0 <= r["tau_measured"] <= most + 1
        if r["mode"] == "reference_draft":  # the target drafting for itself is always accepted
            assert r["tau_measured"] == pytest.approx(most + 1, rel=0.2)
        passes = r["tokens"] / r["tau_measured"]
        steps = passes - r["n_prompts"]
        assert r["accepted_per_step"] == pytest.approx((r["tokens"] - passes) / steps)
        assert 0.0 <= r["accepted_per_step"] <= most


def test_every_speedup_has_a_bootstrap_interval(live: dict) -> None:
    for r in live["rows"]:
        assert r["speedup_ci_low"] <= r["speedup"] <= r["speedup_ci_high"], r
        if r["mode"] == "plain":  # its interval is the spread of its passes around their mean
            assert r["speedup"] == pytest.approx(1.0)
            assert r["plain_spread"] > 0.0 and r["speedup_ci_high"] > r["speedup_ci_low"]


def test_best_k_and_samples(live: dict) -> None:
    assert live["best_k"] in KS
    assert live["best_k"] == choose_k(live["rows"])
    samples = live["samples"]
    assert {(s["mode"], s["k"]) for s in samples} == {("plain", None), ("sd", live["best_k"])}
    plain = [s["text"] for s in samples if s["mode"] == "plain"]
    assert plain == [s["text"] for s in samples if s["mode"] == "sd"] and len(plain) == 2


def _row(mode: str, k: int | None, tok_s: float, task: str = "all") -> dict:
    return {"mode": mode, "k": k, "tok_s": tok_s, "task": task}


def test_choose_k_picks_fastest_pooled_sd_row_ties_to_smaller_k() -> None:
    rows = [
        _row("plain", None, 500.0),
        _row("sd", 2, 90.0),
        _row("sd", 3, 120.0),
        _row("sd", 5, 120.0),
        _row("sd", 4, 300.0, task="code"),
        _row("prompt_lookup", 6, 400.0),
    ]
    assert choose_k(rows) == 3
    threshold = {**_row("sd", None, 999.0), "confidence_threshold": 0.3}
    assert choose_k([*rows, threshold]) == 3, "a threshold run has no fixed k to choose"
    assert choose_k([*rows, _row("sd", 1, 120.5)]) == 1
    with pytest.raises(ValueError, match="no pooled"):
        choose_k([_row("plain", None, 1.0), _row("sd", 2, 5.0, task="chat")])


def test_divergences_are_per_mode_and_found_where_tokens_differ() -> None:
    def rec(tokens: list[int]) -> dict:
        return {"tokens": tokens}

    plain = {
        "mode": "plain",
        "draft": "",
        "k": None,
        "threshold": None,
        "records": [rec([1, 2, 3]), rec([4, 5])],
    }
    sd = {
        "mode": "sd",
        "draft": "d",
        "k": 2,
        "threshold": None,
        "records": [rec([1, 2, 3]), rec([4, 6])],
    }
    pl = {
        "mode": "prompt_lookup",
        "draft": "p",
        "k": 2,
        "threshold": None,
        "records": [rec([1, 2]), rec([4, 5])],
    }
    found = find_divergences([plain, sd, pl], ["chat", "code"])
    assert [(d["mode"], d["prompt_index"], d["position"], d["task"]) for d in found] == [
        ("sd", 1, 1, "code"),
        ("prompt_lookup", 0, 2, "chat"),
    ]
    assert first_divergence([1, 2], [1, 2]) is None


def _fake_ir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / IR_FILE).write_text("<net/>")
    return path


@pytest.mark.parametrize("role", ["target", "draft", "reference"])
def test_missing_ir_file_is_named(tmp_path: Path, tiny_target_dir: Path, role: str) -> None:
    dirs = {r: _fake_ir(tmp_path / r) for r in ("target", "draft", "reference")}
    (dirs[role] / IR_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=str(dirs[role] / IR_FILE)):
        benchmark_live(
            LiveJob(
                dirs["target"],
                dirs["draft"],
                prompts=PROMPTS,
                tokenizer_dir=tiny_target_dir,
                max_new_tokens=4,
                ks=[2],
                reference_draft_ir=dirs["reference"],
            )
        )


@pytest.mark.parametrize(
    ("prompts", "ks", "device", "match"),
    [
        ([], [2], "CPU", "prompts"),
        (PROMPTS, [], "CPU", "ks"),
        (PROMPTS, [2, 0], "CPU", "ks"),
        (PROMPTS, [2], "FPGA", r"FPGA.*CPU"),
    ],
)
def test_bad_inputs_are_refused(tmp_path: Path, prompts, ks, device, match) -> None:
    ir = _fake_ir(tmp_path / "ir")
    with pytest.raises(ValueError, match=match):
        job = LiveJob(ir, ir, prompts=prompts, tokenizer_dir=tmp_path, max_new_tokens=4, ks=ks)
        benchmark_live(job, device=device)


def test_reference_draft_with_other_tokenizer_is_refused(tmp_path: Path, tiny_target_dir) -> None:
    ref = _fake_ir(tmp_path / "reference")
    for name in ("tokenizer_config.json", "tokenizer.json"):
        shutil.copy(tiny_target_dir / name, ref / name)
    tok = json.loads((ref / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["zzz-not-in-target"] = vocab.pop(next(iter(vocab)))
    (ref / "tokenizer.json").write_text(json.dumps(tok))
    ir = _fake_ir(tmp_path / "ir")
    with pytest.raises(ValueError, match=f"reference draft at {ref}.*vocabulary"):
        benchmark_live(
            LiveJob(
                ir,
                ir,
                prompts=PROMPTS,
                tokenizer_dir=tiny_target_dir,
                max_new_tokens=4,
                ks=[2],
                reference_draft_ir=ref,
            )
        )


def test_device_check_lists_available_devices() -> None:
    from fastdraft_dag.resources.core_ultra import CoreUltraResource

    available = CoreUltraResource().available_devices()
    assert "CPU" in available
    CoreUltraResource(device="CPU").validate()
    for device in [d for d in ("GPU", "NPU") if d not in {a.split(".")[0] for a in available}]:
        with pytest.raises(RuntimeError, match=rf"{device}.*CPU"):
            CoreUltraResource(device=device).validate()
    with pytest.raises(RuntimeError, match=r"'GPU'.*\['CPU'\]"):
        check_device("GPU", ["CPU"])
    check_device("GPU", ["CPU", "GPU.0"])
    with pytest.raises(ValueError, match="TPU"):
        CoreUltraResource(device="TPU").validate()


def test_margins_use_the_plain_prefix_once_per_position(tiny_target_dir: Path) -> None:
    from fastdraft_dag.evaluation.live import add_margins
    from fastdraft_dag.evaluation.offline import load_fp32_model
    from fastdraft_dag.openvino.genai import top2_margin

    inputs, plain = [[1, 19556, 665]], [{"tokens": [28, 957, 1462]}]
    divs = [
        {"mode": "sd", "k": 2, "prompt_index": 0, "position": 0, "top2_margin": None},
        {"mode": "sd", "k": 3, "prompt_index": 0, "position": 2, "top2_margin": None},
        {"mode": "prompt_lookup", "k": 3, "prompt_index": 0, "position": 2, "top2_margin": None},
    ]
    add_margins(divs, inputs, plain, tiny_target_dir)
    model = load_fp32_model(tiny_target_dir)
    assert divs[0]["top2_margin"] == pytest.approx(top2_margin(model, [1, 19556, 665]))
    assert divs[1]["top2_margin"] == pytest.approx(top2_margin(model, [1, 19556, 665, 28, 957]))
    assert divs[2]["top2_margin"] == divs[1]["top2_margin"] >= 0.0
    assert divs[0]["top2_margin"] != divs[1]["top2_margin"]


def _records(seconds: list[float], passes: int | None = None) -> list[dict]:
    return [
        {"tokens": [1] * 10, "seconds": s, "passes": passes, "ttft_ms": 1.0, "tpot_ms": 1.0}
        for s in seconds
    ]


def test_a_slow_plain_pass_moves_only_the_modes_measured_beside_it() -> None:
    """The defect met on a shared host: plain measured once, first, during a slow spell, made
    every ratio of the run look good. Now each mode meets the plain passes beside it."""
    from fastdraft_dag.evaluation.live import build_rows, plain_run

    passes = [_records([2.0, 2.0]), _records([1.0, 1.0]), _records([1.0, 1.0])]  # slow first
    sd = {"mode": "sd", "draft": "d", "k": 2, "records": _records([0.5, 0.5], 10)}
    lookup = {"mode": "prompt_lookup", "draft": "p", "k": 2, "records": _records([0.8, 0.8], 10)}
    sd["plain_passes"], lookup["plain_passes"] = [0, 1], [1, 2]
    meta = {"device": "CPU", "precision_hint": "f32", "threads": 0, "max_new_tokens": 10}
    rows = build_rows([plain_run(passes), sd, lookup], passes, ["a", "b"], [], meta)
    pooled = {r["mode"]: r for r in rows if r["task"] == "all"}
    assert pooled["sd"]["speedup"] == pytest.approx(1.5 / 0.5)  # plain's seconds averaged: 1.5
    assert pooled["sd"]["plain_spread"] == pytest.approx(1.0)  # 10 vs 5 tok/s
    assert pooled["prompt_lookup"]["speedup"] == pytest.approx(1.0 / 0.8)  # not 2.0 / 0.8
    assert pooled["prompt_lookup"]["plain_spread"] == pytest.approx(0.0)
    low, high = pooled["sd"]["speedup_ci_low"], pooled["sd"]["speedup_ci_high"]
    assert low == pytest.approx(2.0) and high == pytest.approx(4.0)  # either pass may be drawn
    assert pooled["plain"]["speedup"] == pytest.approx(1.0)

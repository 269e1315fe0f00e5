"""Alignment: mixed SFT + pre-training batches, on-policy arrays, and the acceptance gate.

The models are real and tiny: a word-level tokenizer over 512 words (`w3 w4 ...`), a "target"
trained for a few seconds on Markov chains, a "pretrained" draft trained on a different chain,
and an aligned draft fine-tuned on the target's own greedy answers, so every figure is measured.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from training_fixtures import write_sft, write_shards

from fastdraft_dag.core.errors import ConfigError as ProfileError
from fastdraft_dag.distill import gate as G
from fastdraft_dag.distill.align import AlignJob, align_draft
from fastdraft_dag.distill.config import AlignConfig
from fastdraft_dag.distill.kd_rows import IGNORE, build_sft_arrays, save_sft_npz
from fastdraft_dag.distill.on_policy import build_on_policy_arrays
from fastdraft_dag.draft.config import DraftSize, init_draft
from fastdraft_dag.prompts.render import encode_prompt
from fastdraft_dag.reporting.plots import loss_curve_plot, markdown_image, train_log_rows
from fastdraft_dag.training import trainer
from fastdraft_dag.training.config import PretrainConfig, StageConfig
from fastdraft_dag.training.data import DataError, MixedData, SftData, local_slice, open_data
from fastdraft_dag.training.pretrain import pretrain_draft

VOCAB = 512
SIZE = DraftSize(64, 2, 4, 2, 128, max_position_embeddings=128)


def write_word_target(root: Path) -> Path:
    """Tokenizer + config + generation config: `w5 w7` -> [5, 7]; `</s>` (2) ends a turn."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    root.mkdir(parents=True, exist_ok=True)
    words = ["<unk>", "<s>", "</s>", *[f"w{i}" for i in range(3, VOCAB)]]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>"})
    )
    config = {"model_type": "llama", "vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2,
              "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))
    (root / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    return root


def _train(init: Path, out: Path, data: dict, steps: int, lr: float = 3e-3) -> Path:
    spec = {
        "backend": "cpu", "init_dir": str(init), "out_dir": str(out), "threads": 1,
        "dtype": "fp32", "seed": 0,
        "stages": [{"name": "s", "steps": steps, "batch_size": 8, "lr": lr, "min_lr": lr / 10,
                    "warmup_steps": 2, "eval_batches": 1, "data": data}],
    }  # fmt: skip
    trainer.train(spec, log=lambda m: None, report=lambda p: None)
    return out


def _greedy_rows(model_dir: Path, n: int, new: int) -> list[dict]:
    """KD rows: random 8-word prompts answered greedily by the model at `model_dir`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        prompt = rng.integers(3, VOCAB, size=8)
        ids = torch.from_numpy(prompt)[None]
        with torch.inference_mode():
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                eos_token_id=2, pad_token_id=2, top_k=None, top_p=None,
            )[0, 8:].tolist()  # fmt: skip
        answer = [t for t in out if t != 2]
        rows.append({
            "id": f"p{i}/t0.0/s0", "prompt_id": f"p{i}", "task": ("code", "instructions")[i % 2],
            "prompt": " ".join(f"w{t}" for t in prompt), "chat": False,
            "response": " ".join(f"w{t}" for t in answer), "finish": "length",
        })  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Target (chain x7), pretrained draft (chain x11), KD rows, and the aligned draft.

    Measured with these settings: held-out acceptance ~0.06 pretrained -> ~0.34 aligned.
    """
    root = tmp_path_factory.mktemp("alignment")
    tok = write_word_target(root / "tok")
    shards = write_shards(root / "shards")
    init_draft(tok, SIZE, root / "init_target", seed=0)
    init_draft(tok, SIZE, root / "init_draft", seed=1)
    text = {"kind": "packed", "root": str(shards), "mix": {"text": 1.0}}
    code = {"kind": "packed", "root": str(shards), "mix": {"code": 1.0}}
    target = _train(root / "init_target", root / "target", text, steps=100)
    pretrained = _train(root / "init_draft", root / "pretrained", code, steps=20)
    rows = _greedy_rows(target, 40, 16)
    arrays, _ = build_sft_arrays(rows, target, 64, val_fraction=0.25, drop_truncated=False)
    save_sft_npz(arrays, root / "kd.npz")
    sft = {"kind": "sft", "path": str(root / "kd.npz")}
    aligned = _train(pretrained, root / "aligned", sft, steps=60)
    return {"root": root, "target": target, "pretrained": pretrained, "aligned": aligned,
            "rows": rows, "shards": shards}  # fmt: skip


# ----------------------------------------------------------------------------- mixed data


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("mixed")
    return {"shards": write_shards(root / "shards"), "sft": write_sft(root / "sft.npz")}


def _mixed_spec(inputs: dict, pretrain: float = 0.25) -> dict:
    return {"kind": "mixed", "parts": [
        {"name": "kd", "weight": 1 - pretrain, "kind": "sft", "path": str(inputs["sft"])},
        {"name": "pretrain", "weight": pretrain, "kind": "packed", "root": str(inputs["shards"]),
         "mix": {"text": 0.5, "code": 0.5}},
    ]}  # fmt: skip


def test_mixed_plan_is_deterministic_and_keeps_the_weights(mixed_inputs: dict) -> None:
    data = open_data(_mixed_spec(mixed_inputs))
    assert isinstance(data, MixedData) and data.seq_len == 32  # the SFT width
    a = data.draw(np.random.default_rng(7), 4000)
    b = data.draw(np.random.default_rng(7), 4000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, data.draw(np.random.default_rng(8), 4000))
    share = float((a[:, 0] == 1).mean())
    assert 0.22 < share < 0.28, share
    # The global plan decides every row; N processes slice it and see what 1 process sees.
    plan = a[:8]
    halves = [data.batch(local_slice(plan, r, 2)) for r in range(2)]
    whole = data.batch(plan)
    for key in whole:
        assert torch.equal(torch.cat([h[key] for h in halves]), whole[key])


def test_mixed_batch_shapes_and_masks(mixed_inputs: dict) -> None:
    data = open_data(_mixed_spec(mixed_inputs, pretrain=0.5))
    sft = SftData(str(mixed_inputs["sft"]))
    plan = data.draw(np.random.default_rng(0), 16)
    batch = data.batch(plan)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "input_ids": (16, 32), "labels": (16, 32), "attention_mask": (16, 32)
    }  # fmt: skip
    packed, own = plan[:, 0] == 1, plan[:, 0] == 0
    assert packed.any() and own.any()
    # Packed rows: cut to the SFT width, every position attended and learned.
    assert (batch["attention_mask"][packed] == 1).all()
    assert torch.equal(batch["labels"][packed], batch["input_ids"][packed])
    # SFT rows: exactly what the SFT data gives for the same row indices.
    ref = sft.rows(plan[own, 1])
    for key in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(batch[key][own], ref[key].long())
    assert data.loss_tokens(plan) == int((batch["labels"][:, 1:] != IGNORE).sum())


def test_mixed_pads_short_packed_rows_into_a_wider_sft_batch(
    mixed_inputs: dict, tmp_path: Path
) -> None:
    with np.load(mixed_inputs["sft"]) as z:
        wide = {k: np.pad(v, ((0, 0), (0, 64)), constant_values=-100 if "labels" in k else 0)
                for k, v in z.items()}  # fmt: skip
    np.savez(tmp_path / "wide.npz", **wide)
    spec = _mixed_spec({**mixed_inputs, "sft": tmp_path / "wide.npz"}, pretrain=0.5)
    data = open_data(spec)
    assert data.seq_len == 96
    plan = data.draw(np.random.default_rng(1), 12)
    batch = data.batch(plan)
    packed = plan[:, 0] == 1
    assert (batch["attention_mask"][packed, :64] == 1).all()
    assert (batch["attention_mask"][packed, 64:] == 0).all()
    assert (batch["labels"][packed, 64:] == IGNORE).all()
    assert data.loss_tokens(plan) == int((batch["labels"][:, 1:] != IGNORE).sum())
    domains = [d for d, _ in data.val_batches(4, 1)]
    assert domains == ["kd/sft", "pretrain/text", "pretrain/code"]
    weights = sum(data.domain_weight(d) for d in dict.fromkeys(domains))
    assert weights == pytest.approx(1.0)


def test_mixed_spec_errors_name_the_problem(mixed_inputs: dict) -> None:
    spec = _mixed_spec(mixed_inputs)
    with pytest.raises(DataError, match="itself mixed"):
        open_data({"kind": "mixed", "parts": [{**spec, "weight": 1.0}]})
    with pytest.raises(DataError, match="no part has a positive weight"):
        open_data({"kind": "mixed", "parts": [{**p, "weight": 0} for p in spec["parts"]]})
    with pytest.raises(DataError, match="'kd' is repeated"):
        open_data({"kind": "mixed", "parts": [spec["parts"][0], spec["parts"][0]]})


def test_trainer_runs_a_mixed_stage(world: dict, tmp_path: Path) -> None:
    data = {"kind": "mixed", "parts": [
        {"name": "kd", "weight": 0.8, "kind": "sft", "path": str(world["root"] / "kd.npz")},
        {"name": "pretrain", "weight": 0.2, "kind": "packed", "root": str(world["shards"]),
         "mix": {"text": 1.0}},
    ]}  # fmt: skip
    out = _train(world["pretrained"], tmp_path / "out", data, steps=4)
    metrics = json.loads((out / "metrics.json").read_text())
    by_domain = metrics["stages"][0]["val_loss_by_domain"]
    assert set(by_domain) == {"kd/sft", "pretrain/text"}
    expected = 0.8 * by_domain["kd/sft"] + 0.2 * by_domain["pretrain/text"]
    assert metrics["val_loss"] == pytest.approx(expected)


# ----------------------------------------------------------------------------- on-policy


def test_on_policy_labels_are_the_target_argmax_on_draft_sequences(world: dict) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = world["rows"][:6]
    args = (world["target"], world["pretrained"], rows)
    kw = {"max_len": 48, "max_new_tokens": 12, "temperature": 1.0, "batch_size": 4, "seed": 3}
    arrays, stats = build_on_policy_arrays(*args, **kw)
    again, _ = build_on_policy_arrays(*args, **kw)
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    assert arrays["train_input_ids"].shape == (6, 48) and arrays["val_input_ids"].shape == (0, 48)
    assert stats["rows"] == 6
    assert stats["response_tokens"] == int((arrays["train_labels"] != IGNORE).sum())
    tok = AutoTokenizer.from_pretrained(world["target"])
    target = AutoModelForCausalLM.from_pretrained(world["target"], dtype=torch.float32).eval()
    prompts = {tuple(encode_prompt(tok, r)) for r in rows}
    for ids, labels, mask in zip(
        arrays["train_input_ids"], arrays["train_labels"], arrays["train_attention_mask"],
        strict=True,
    ):  # fmt: skip
        n = int(mask.sum())
        learned = np.flatnonzero(labels != IGNORE)
        p = int(learned[0])
        assert tuple(ids[:p].tolist()) in prompts  # prompt = its encoding, exactly
        assert learned.tolist() == list(range(p, n))  # every response position, nothing else
        with torch.inference_mode():  # one unpadded pass: the reference for the batched path
            logits = target(torch.tensor([ids[:n].tolist()], dtype=torch.long)).logits[0]
        assert labels[p:n].tolist() == logits[p - 1 : n - 1].argmax(-1).tolist()
    # The draft's own tokens are the inputs; the target's choices are the labels: they differ.
    assert stats["draft_sample_agreement"] < 1.0


# ----------------------------------------------------------------------------- the gate


def test_aligned_draft_beats_pretrained_on_held_out_rows(world: dict) -> None:
    held = G.held_out_rows(world["rows"], 0.25)
    train_ids = {r["id"] for r in G.train_prompt_rows(world["rows"], 0.25)}
    assert held and not train_ids & {r["id"] for r in held}
    figures = G.held_out_acceptance(
        world["target"], {"pretrained": world["pretrained"], "aligned": world["aligned"]}, held, 64
    )
    before, after = figures["pretrained"], figures["aligned"]
    assert after["positions"] == sum(len(r["response"].split()) for r in held)
    assert set(after["by_task"]) == {r["task"] for r in held}
    passed, desc, table = G.gate(after, before)
    assert passed, desc
    assert after["overall"] > before["overall"]
    assert f"{before['overall']:.3f} -> {after['overall']:.3f}" in desc
    assert [r["task"] for r in table] == [*sorted(after["by_task"]), "all"]
    # Asking for more than was gained fails and says by how much it fell short.
    gain = after["overall"] - before["overall"]
    passed, desc, _ = G.gate(after, before, min_gain=gain + 0.1)
    assert not passed and "short by 0.100" in desc


def test_zeroed_draft_fails_the_gate_naming_the_shortfall(world: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(world["aligned"], broken)
    weights = load_file(broken / "model.safetensors")
    save_file({k: torch.zeros_like(v) for k, v in weights.items()}, broken / "model.safetensors")
    held = G.held_out_rows(world["rows"], 0.25)
    figures = G.held_out_acceptance(
        world["target"], {"pretrained": world["pretrained"], "broken": broken}, held, 64
    )
    passed, desc, table = G.gate(figures["broken"], figures["pretrained"])
    assert not passed
    assert figures["broken"]["overall"] == 0.0  # all-zero logits pick <unk>, never the target's
    assert "falls short" in desc and "short by" in desc
    for row in table[:-1]:
        assert f"{row['task']} {row['gain']:+.3f}" in desc


def test_gate_without_held_out_rows_fails_clearly() -> None:
    empty = {"overall": None, "positions": 0, "rows": 0, "by_task": {}}
    passed, desc, table = G.gate(empty, empty)
    assert not passed and "align.val_fraction" in desc and table == []


# ----------------------------------------------------------------------------- loss curve


def test_loss_curve_png_from_the_training_log(world: dict, tmp_path: Path) -> None:
    rows = train_log_rows(world["aligned"] / "train_log.jsonl")
    assert {r["kind"] for r in rows} == {"train", "eval"}
    png = loss_curve_plot(rows, tmp_path / "curve.png", "alignment")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert markdown_image(png, "loss").startswith("![loss](data:image/png;base64,iVBOR")
    assert train_log_rows(tmp_path / "missing.jsonl") == []
    with pytest.raises(ValueError, match="no train or eval rows"):
        loss_curve_plot([], tmp_path / "x.png", "empty")


# ----------------------------------------------------------------------------- the assets


def test_contaminated_user_prompts_fail_the_kd_asset_at_once(
    tiny_target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user prompt file holding an MT-bench question stops synthetic_kd_dataset before any
    generation, naming both ids, and is not retried (a retry would fail the same way)."""
    import dataclasses

    import dagster as dg
    from conftest import CACHE

    from fastdraft_dag.assets.registration import ensure_default_target
    from fastdraft_dag.config import presets as profiles
    from fastdraft_dag.definitions import build_defs
    from fastdraft_dag.prompts.eval_sets import eval_prompts

    question = eval_prompts("instructions", 5)[4]
    planted = tmp_path / "mine.jsonl"
    planted.write_text(
        json.dumps({"id": "u-planted", "task": "instructions", "prompt": question["prompt"]})
    )
    kd = dataclasses.replace(
        profiles.TINY.kd, prompt_sources=({"kind": "jsonl", "path": str(planted)},)
    )
    variant = dataclasses.replace(profiles.TINY, name="contaminated", kd=kd)
    monkeypatch.setitem(profiles.PROFILES, "contaminated", variant)
    root = tmp_path / "artifacts"
    root.mkdir()
    (root / "targets").symlink_to(CACHE / "targets", target_is_directory=True)
    defs = build_defs("contaminated", str(root))
    instance = dg.DagsterInstance.ephemeral()
    key = ensure_default_target(instance, defs.resources["pipeline"])
    assert (
        defs.resolve_job_def("observe_targets")
        .execute_in_process(instance=instance, partition_key=key)
        .success
    )
    result = dg.materialize(
        list(defs.assets), instance=instance, resources=defs.resources,
        selection="synthetic_kd_dataset", partition_key=key, raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1
    message = str(failures[0].event_specific_data.error)
    assert "u-planted" in message and question["id"] in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not list((root / "synthetic_kd_dataset").rglob("kd.jsonl")), "it generated anyway"


# ----------------------------------------------------------------------------- runners, no Dagster


def _in_process(spec, work: Path) -> dict:
    spec = spec.with_runtime(backend="cpu", threads=1)
    return trainer.train(spec, log=lambda m: None, report=lambda p: None)


def test_pretrain_runner_trains_every_recipe_stage(world: dict, tmp_path: Path) -> None:
    cfg = PretrainConfig(
        draft=SIZE,
        stages=(StageConfig("pretrain", steps=4, batch_size=4, lr=3e-3, warmup_steps=1),
                StageConfig("continued", steps=3, batch_size=4, lr=1e-3, mix={"code": 1.0},
                            warmup_steps=1)),
        dtype="fp32", init_embeddings="random",
    )  # fmt: skip
    out = tmp_path / "pretrained"
    result = pretrain_draft(
        world["root"] / "tok",
        "word-target",
        shards=world["shards"],
        lineage={"tokenized_shards": "v1"},
        cfg=cfg,
        threads=1,
        out=out,
        train=_in_process,
    )
    assert [s["name"] for s in result.metrics["stages"]] == ["pretrain", "continued"]
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    assert not (out / "_init").exists() and not (out / "_checkpoints").exists()


def _align(world: dict, tmp_path: Path, job: AlignJob, log=lambda m: None) -> dict:
    """The align runner on the world's KD rows, trained in process, into tmp_path/aligned."""
    kd_dir = tmp_path / "kd"
    kd_dir.mkdir()
    (kd_dir / "kd.jsonl").write_text("".join(json.dumps(r) + "\n" for r in world["rows"]))
    return align_draft(
        world["target"],
        "word-target",
        pretrained=world["pretrained"],
        kd_dir=kd_dir,
        shards=None,
        lineage={"pretrained_draft": "p"},
        job=job,
        out=tmp_path / "aligned",
        train=_in_process,
        log=log,
    )


def test_align_runner_builds_a_gated_draft_without_dagster(world: dict, tmp_path: Path) -> None:
    stage = StageConfig("align", steps=40, batch_size=8, lr=3e-3, warmup_steps=2, eval_batches=1)
    job = AlignJob(AlignConfig(stage, max_len=64, val_fraction=0.25), 16, 4, 0, "fp32", 1)
    out = tmp_path / "aligned"
    metrics = _align(world, tmp_path, job)
    gate = metrics["gate"]
    assert gate["aligned"]["overall"] > gate["pretrained"]["overall"]
    assert metrics["data_parts"] == [{"name": "kd", "kind": "sft", "weight": 1.0}]
    assert (out / "model.safetensors").is_file() and not (out / "_work").exists()


def test_align_runner_distils_the_targets_logits(world: dict, tmp_path: Path) -> None:
    """align.stage.loss 'fkl': a teacher pass, then training on the target's top-k, gated."""
    stage = StageConfig("align", steps=40, batch_size=8, lr=3e-3, warmup_steps=2, eval_batches=1,
                        loss="fkl")  # fmt: skip
    job = AlignJob(AlignConfig(stage, max_len=64, val_fraction=0.25, teacher_topk=8), 16, 4, 0,
                   "fp32", 1)  # fmt: skip
    logs: list[str] = []
    metrics = _align(world, tmp_path, job, log=logs.append)
    assert any("teacher pass" in m for m in logs)
    gate = metrics["gate"]
    assert gate["aligned"]["overall"] > gate["pretrained"]["overall"]


def test_logit_loss_refuses_rows_without_teacher_logits() -> None:
    stage = StageConfig("align", steps=1, batch_size=1, lr=1e-3, loss="tvd")
    with pytest.raises(ProfileError, match="pretrain_mix"):
        AlignConfig(stage, pretrain_mix=0.2)
    with pytest.raises(ProfileError, match="loss"):
        StageConfig("align", steps=1, batch_size=1, lr=1e-3, loss="kl")

"""Target-derived drafts and trimmed heads: init, save/load, training, IR export and SD."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from training_fixtures import write_sft

from fastdraft_dag.draft import derived
from fastdraft_dag.draft.vocab import coverage, load_vocab, rank_vocab, token_counts
from fastdraft_dag.training import trainer
from fastdraft_dag.training.data import IGNORE, SftData, TrimmedLabels

KEEP = 600  # rows of the trimmed head in these tests


def _keep_ids(vocab: int) -> np.ndarray:
    counts = token_counts([list(range(3, 3 + KEEP))] * 2 + [[1, 2, 5000]])
    return rank_vocab(counts, KEEP, vocab, always_keep=(2,))


def test_vocab_ranking_and_coverage() -> None:
    counts = token_counts([[5, 5, 5, 7, 7, 9], [5, 11]])
    kept = rank_vocab(counts, 3, 100, always_keep=(2,))
    assert kept.tolist() == [2, 5, 7]  # end-of-turn first, then by count
    assert coverage(kept, [[5, 7, 9, 9]]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k must be"):
        rank_vocab(counts, 0, 100)


def test_derived_draft_is_the_targets_tensors(target_dir: Path) -> None:
    model = derived.derive_from_target(target_dir, [0, 29])
    src = derived.read_state(target_dir)
    state = model.state_dict()
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 576
    for name, tensor in src.items():
        if name.startswith("model.layers.29."):
            assert torch.equal(state[name.replace(".29.", ".1.")], tensor.float())
        elif name.startswith("model.layers.0.") or not name.startswith("model.layers."):
            assert torch.equal(state[name], tensor.float()), name
    assert derived.pick_layers(30, 3, "spread") == [0, 14, 29]
    assert derived.pick_layers(30, 2, "first") == [0, 1]
    with pytest.raises(ValueError, match="draft.layers"):
        derived.pick_layers(30, 31, "first")


def _tiny_of(architecture: str, tokenizer_dir: Path, out: Path) -> Path:
    """A random 2-layer target of one architecture with the real tokenizer (Qwen2 with its q/k/v
    biases, Mistral with its sliding window): what a user's target of that family looks like."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from fastdraft_dag.core.tokenizers import copy_tokenizer_files

    config = AutoConfig.for_model(
        architecture, vocab_size=49152, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=architecture == "qwen2",
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    for name, p in model.named_parameters():
        if name.endswith(".bias"):  # zero-initialised: make a lost bias change the logits
            p.data.normal_(0, 0.5)
    model.save_pretrained(out, safe_serialization=True)
    copy_tokenizer_files(tokenizer_dir, out)
    return out


@pytest.mark.parametrize("architecture", derived.DERIVABLE)
def test_a_draft_derives_from_every_allowed_architecture(
    architecture: str, tiny_target_dir: Path, tmp_path: Path
) -> None:
    """Every layer kept, the derived draft is the target (same class, same logits); one layer
    kept and its head trimmed, it saves and loads back to the same logits."""
    from transformers import AutoModelForCausalLM

    target_dir = _tiny_of(architecture, tiny_target_dir, tmp_path / "target")
    target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
    whole = derived.derive_from_target(target_dir, [0, 1])
    assert type(whole) is type(target)
    ids = torch.tensor([[5, 17, 300, 4000, 9]])
    with torch.no_grad():
        assert torch.allclose(whole(ids).logits, target(ids).logits, atol=1e-5)
    kept = _keep_ids(49152)
    draft = derived.trim_head(derived.derive_from_target(target_dir, [1]), kept)
    derived.save_draft(draft, tmp_path / "draft")
    back = derived.load_draft(tmp_path / "draft")
    assert type(back) is type(target) and back.config.num_hidden_layers == 1
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, draft(ids).logits, atol=1e-5)


def test_an_architecture_off_the_list_is_named(tiny_target_dir: Path, tmp_path: Path) -> None:
    target_dir = _tiny_of("gpt_neox", tiny_target_dir, tmp_path / "neox")
    with pytest.raises(ValueError, match=r"'gpt_neox'.*draft.init='random'"):
        derived.derive_from_target(target_dir, [0])


def test_trimmed_head_round_trip(tiny_target_dir: Path, tmp_path: Path) -> None:
    full = derived.derive_from_target(tiny_target_dir, [0])
    vocab = full.config.vocab_size
    kept = _keep_ids(vocab)
    trimmed = derived.trim_head(derived.derive_from_target(tiny_target_dir, [0]), kept)
    ids = torch.tensor([[5, 17, 300, 4000]])
    with torch.no_grad():
        ref = full(ids).logits
        small = trimmed(ids).logits
    assert small.shape[-1] == KEEP and torch.allclose(small, ref[..., kept], atol=1e-5)
    derived.save_draft(trimmed, tmp_path / "draft")
    assert load_vocab(tmp_path / "draft")[0].tolist() == kept.tolist()
    back = derived.load_fp32_model(tmp_path / "draft")  # what every acceptance figure uses
    with torch.no_grad():
        out = back(ids).logits
    assert out.shape[-1] == vocab
    assert torch.allclose(out[..., kept], small, atol=1e-5)
    dropped = np.setdiff1d(np.arange(vocab), kept)
    assert torch.all(out[..., dropped] == derived.FILL)
    # The gate scores positions through the head itself: it must see full-vocabulary ids too.
    from fastdraft_dag.distill.gate import greedy_next

    picked = greedy_next(back, ids, torch.ones_like(ids), [[0, 1, 2, 3]])[0]
    assert picked == out[0].argmax(-1).tolist() and set(picked) <= set(kept.tolist())
    # A plain transformers user gets a working full-vocabulary draft from the same directory.
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "draft").eval()
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits[..., kept], small, atol=1e-5)


def test_labels_map_to_the_trimmed_rows(tmp_path: Path) -> None:
    data = SftData(str(write_sft(tmp_path / "sft.npz")))
    kept = torch.tensor(
        sorted(
            {int(t) for t in data.sample(np.random.default_rng(0), 8)["labels"].flatten() if t >= 0}
        )[::2]
    )
    wrapped = TrimmedLabels(data, kept, 512)
    plan = data.draw(np.random.default_rng(1), 4)
    raw, mapped = data.batch(plan), wrapped.batch(plan)
    assert torch.equal(raw["input_ids"], mapped["input_ids"])
    for full, small in zip(
        raw["labels"].flatten().tolist(), mapped["labels"].flatten().tolist(), strict=True
    ):
        if full in kept.tolist():
            assert kept[small] == full
        else:
            assert small == IGNORE


def test_trainer_trains_a_frozen_trimmed_draft(tiny_target_dir: Path, tmp_path: Path) -> None:
    model = derived.trim_head(derived.derive_from_target(tiny_target_dir, [0]), _keep_ids(49152))
    derived.save_draft(model, tmp_path / "init")
    from fastdraft_dag.core.tokenizers import copy_tokenizer_files

    copy_tokenizer_files(tiny_target_dir, tmp_path / "init")
    sft = write_sft(tmp_path / "sft.npz")
    spec = {
        "backend": "cpu", "init_dir": str(tmp_path / "init"), "out_dir": str(tmp_path / "out"),
        "threads": 1, "dtype": "fp32", "seed": 0, "freeze": ["embed"],
        "stages": [{"name": "align", "steps": 3, "batch_size": 4, "lr": 1e-2, "min_lr": 1e-3,
                    "warmup_steps": 1, "eval_batches": 1, "data": {"kind": "sft", "path": str(sft)}}],
    }  # fmt: skip
    metrics = trainer.train(spec, log=lambda m: None, report=lambda p: None)
    assert np.isfinite(metrics["val_loss"])
    before, after = (
        load_file(tmp_path / "init" / "model.safetensors"),
        load_file(tmp_path / "out" / "model.safetensors"),
    )
    assert torch.equal(
        before["model.embed_tokens.weight"], after["model.embed_tokens.weight"]
    )  # frozen
    assert not torch.equal(
        before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"]
    )
    assert (
        json.loads((tmp_path / "out" / "draft_vocab.json").read_text())["kept_ids"]
        == _keep_ids(49152).tolist()
    )


@pytest.mark.slow
def test_trimmed_ir_is_full_vocabulary_and_sd_stays_exact(
    tiny_target_dir: Path, tmp_path: Path
) -> None:
    """The IR scatters K logits back to 49,152; SD with it returns plain decoding's tokens, as
    SD with the equivalent untrimmed draft does."""
    from fastdraft_dag.core.tokenizers import copy_tokenizer_files
    from fastdraft_dag.openvino import genai
    from fastdraft_dag.openvino.export import check_ir_logits, export_ir

    kept = _keep_ids(49152)
    for name, model in (("full", derived.derive_from_target(tiny_target_dir, [0])),
                        ("trimmed", derived.trim_head(derived.derive_from_target(tiny_target_dir, [0]), kept))):  # fmt: skip
        derived.save_draft(model, tmp_path / f"{name}-hf")
        copy_tokenizer_files(tiny_target_dir, tmp_path / f"{name}-hf")
        export_ir(tmp_path / f"{name}-hf", tmp_path / f"{name}-ir", "fp32")
    export_ir(tiny_target_dir, tmp_path / "target-ir", "fp32")
    probe = list(range(5, 40))
    check = check_ir_logits(tmp_path / "trimmed-hf", tmp_path / "trimmed-ir", probe, 1e-3)
    assert check["ok"], check
    props = genai.pipeline_properties("f32", 1)
    tensors = genai.to_tensors([probe, [7, 8, 9, 10, 11, 12]])
    plain = genai.make_pipeline(tmp_path / "target-ir", "CPU", props)
    ref = [
        r["tokens"]
        for r in genai.run_prompts(plain, tensors, genai.greedy_config(plain, 12, None), False)
    ]
    for name in ("full", "trimmed"):
        pipe = genai.make_pipeline(
            tmp_path / "target-ir", "CPU", props, draft_ir=tmp_path / f"{name}-ir"
        )
        out = genai.run_prompts(pipe, tensors, genai.greedy_config(pipe, 12, 3), False)
        assert [r["tokens"] for r in out] == ref, name

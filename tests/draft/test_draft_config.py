"""Draft config derivation: the target's vocabulary and RoPE carried over, bad shapes refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastdraft_dag.draft.config import (
    PRESETS,
    DraftConfigError,
    DraftSize,
    derive_draft_config,
    estimate_parameters,
    init_draft,
    scaled_size,
)

SMALL = DraftSize(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128)


def write_small_target(
    root: Path, vocab_size: int = 512, tokenizer_words: int = 512, **config_overrides
) -> Path:
    """A target dir with a word-level tokenizer: enough for config derivation, no model needed."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    root.mkdir(parents=True, exist_ok=True)
    words = ["<unk>", "<s>", "</s>", *[f"w{i}" for i in range(3, tokenizer_words)]]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(root / "tokenizer.json"))
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                  "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}  # fmt: skip
    (root / "tokenizer_config.json").write_text(json.dumps(tok_config))
    (root / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    config = {"model_type": "llama", "vocab_size": vocab_size, "bos_token_id": 1,
              "eos_token_id": 2, "pad_token_id": 2, "unk_token_id": 0, "rms_norm_eps": 1e-6,
              "max_position_embeddings": 8192,
              "rope_parameters": {"rope_theta": 50000.0, "rope_type": "default"}}  # fmt: skip
    (root / "config.json").write_text(json.dumps({**config, **config_overrides}))
    return root


def test_derive_from_real_target(target_dir: Path) -> None:
    config = derive_draft_config(target_dir, SMALL)
    assert config.vocab_size == 49152
    assert config.rope_parameters["rope_theta"] == 100000.0
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, 2)
    assert config.unk_token_id == 0
    assert config.tie_word_embeddings
    assert config.max_position_embeddings == 2048  # min(8192, 2048)
    assert config.head_dim == 16


def test_derive_copies_target_settings(tmp_path: Path) -> None:
    target = write_small_target(tmp_path / "t")
    config = derive_draft_config(target, DraftSize(64, 2, 4, 2, 128, max_position_embeddings=256))
    assert config.vocab_size == 512
    assert config.rope_parameters == {"rope_theta": 50000.0, "rope_type": "default"}
    assert config.rms_norm_eps == 1e-6
    assert config.max_position_embeddings == 256


@pytest.mark.parametrize(
    ("size", "named"),
    [
        (DraftSize(100, 2, 3, 1, 128), "hidden_size=100 is not divisible by num_heads=3"),
        (DraftSize(64, 2, 4, 3, 128), "num_kv_heads=3"),
        (DraftSize(36, 2, 4, 2, 128), "head_dim=9"),
        (DraftSize(64, 0, 4, 2, 128), "num_layers=0"),
        (DraftSize(-64, 2, 4, 2, 128), "hidden_size=-64"),
        (DraftSize(64, 2, 4, 2, 0), "intermediate_size=0"),
        (DraftSize(64, 2, 4, 2, 128, max_position_embeddings=0), "max_position_embeddings=0"),
    ],
)
def test_invalid_sizes_named_before_reading_target(size: DraftSize, named: str) -> None:
    # The target dir does not exist: the size is refused before anything is read or built.
    with pytest.raises(DraftConfigError, match=named.replace("(", r"\(")):
        derive_draft_config(Path("/nonexistent-target"), size)


def test_tokenizer_larger_than_vocab_refused(tmp_path: Path) -> None:
    target = write_small_target(tmp_path / "t", vocab_size=512, tokenizer_words=600)
    with pytest.raises(DraftConfigError, match="600 tokens but vocab_size=512"):
        derive_draft_config(target, SMALL)


def test_init_draft_writes_hf_layout_with_target_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = write_small_target(tmp_path / "t")
    counts = init_draft(target, SMALL, tmp_path / "draft", seed=1)
    out = tmp_path / "draft"
    assert (out / "model.safetensors").is_file()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (out / name).read_bytes() == (target / name).read_bytes()
    assert counts["parameters"] - counts["non_embedding_parameters"] == 512 * 64
    assert json.loads((out / "config.json").read_text())["rope_theta"] == 50000.0  # for 4.x
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.rope_parameters["rope_theta"] == 50000.0
    assert sum(p.numel() for p in model.parameters()) == counts["parameters"]
    assert AutoTokenizer.from_pretrained(out)("w5 w7").input_ids == [5, 7]


def test_target_initialized_embedding_is_the_svd_projection(tiny_target_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from fastdraft_dag.draft.config import target_embedding_projection

    size = DraftSize(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2,
                     intermediate_size=64, max_position_embeddings=256)  # fmt: skip
    init_draft(tiny_target_dir, size, tmp_path / "d", init_embeddings="target")
    draft = AutoModelForCausalLM.from_pretrained(tmp_path / "d")
    emb = draft.get_input_embeddings().weight
    assert torch.allclose(emb, target_embedding_projection(tiny_target_dir, 32), atol=1e-6)
    assert draft.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # still tied
    assert abs(float(emb.std()) - 0.02) < 1e-3


def test_embedding_init_rejects_bad_requests(tiny_target_dir, tmp_path):
    size = DraftSize(hidden_size=128, num_layers=1, num_heads=4, num_kv_heads=2,
                     intermediate_size=64, max_position_embeddings=256)  # fmt: skip
    with pytest.raises(DraftConfigError, match="init_embeddings 'svd'"):
        init_draft(tiny_target_dir, size, tmp_path / "a", init_embeddings="svd")
    with pytest.raises(DraftConfigError, match="hidden_size 128 exceeds the target's 64"):
        init_draft(tiny_target_dir, size, tmp_path / "b", init_embeddings="target")


PHI3_MINI = {
    "vocab_size": 32064,
    "hidden_size": 3072,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "intermediate_size": 8192,
}
LLAMA31_8B = {"vocab_size": 128256, "hidden_size": 4096, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336}  # fmt: skip


def test_presets_have_the_papers_sizes() -> None:
    # FastDraft: ~50M parameters for Phi-3-mini (32k vocabulary), ~150M for Llama-3.1-8B (128k).
    assert estimate_parameters(PRESETS["fastdraft-50m"], 32064) == pytest.approx(50e6, rel=0.03)
    assert estimate_parameters(PRESETS["fastdraft-150m"], 128256) == pytest.approx(150e6, rel=0.03)
    assert all(p.tie_word_embeddings for p in PRESETS.values())


def test_parameter_estimate_is_exact(tmp_path: Path) -> None:
    target = write_small_target(tmp_path / "t")
    for size in (SMALL, DraftSize(64, 2, 4, 2, 128, tie_word_embeddings=False)):
        counts = init_draft(target, size, tmp_path / f"d{size.tie_word_embeddings}")
        assert counts["parameters"] == estimate_parameters(size, 512)


def test_untied_head_is_an_explicit_choice(tmp_path: Path) -> None:
    target = write_small_target(tmp_path / "t")
    assert derive_draft_config(target, SMALL).tie_word_embeddings is True
    untied = DraftSize(64, 2, 4, 2, 128, tie_word_embeddings=False)
    assert derive_draft_config(target, untied).tie_word_embeddings is False


def test_scaled_size_follows_the_target() -> None:
    assert scaled_size(PHI3_MINI) == PRESETS["fastdraft-50m"]  # 1.5% of 3.8B: the paper's draft
    llama = scaled_size(LLAMA31_8B)
    assert 100e6 < estimate_parameters(llama, 128256) < 160e6 and llama.num_layers == 4
    bigger = scaled_size(LLAMA31_8B, fraction=0.03)
    assert estimate_parameters(bigger, 128256) > estimate_parameters(llama, 128256)
    with pytest.raises(DraftConfigError, match="fraction=2"):
        scaled_size(PHI3_MINI, fraction=2)


def test_sizes_by_name_resolve_against_the_real_target(target_dir: Path) -> None:
    scaled = derive_draft_config(target_dir, "scaled")  # SmolLM2-135M: the default profile's d128x4
    assert (scaled.hidden_size, scaled.num_hidden_layers, scaled.vocab_size) == (128, 4, 49152)
    assert derive_draft_config(target_dir, "fastdraft-50m").hidden_size == 768
    with pytest.raises(DraftConfigError, match="'huge'.*fastdraft-50m"):
        derive_draft_config(target_dir, "huge")


def test_settings_the_draft_cannot_carry_are_named(tmp_path: Path) -> None:
    long_ctx = DraftSize(64, 2, 4, 2, 128, max_position_embeddings=16384)
    with pytest.raises(
        DraftConfigError, match="max_position_embeddings=16384 exceeds the target's 8192"
    ):
        derive_draft_config(write_small_target(tmp_path / "a"), long_ctx)
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 48,
            "long_factor": [1.0] * 48, "original_max_position_embeddings": 4096}  # fmt: skip
    phi3_128k = write_small_target(tmp_path / "b", rope_parameters=rope)
    with pytest.raises(DraftConfigError, match="head_dim=16 .* must be 96"):
        derive_draft_config(phi3_128k, SMALL)
    fits = derive_draft_config(phi3_128k, DraftSize(192, 2, 2, 1, 256))  # head_dim 96
    assert fits.rope_parameters["rope_type"] == "longrope"
    with pytest.raises(DraftConfigError, match="eos_token_id=700 is outside vocab_size=512"):
        derive_draft_config(write_small_target(tmp_path / "c", eos_token_id=700), SMALL)


def test_scaled_rope_survives_for_transformers_4(tmp_path: Path) -> None:
    """Llama 3.1's "llama3" RoPE scaling must reach the Gaudi env (transformers 4.55) too."""
    from transformers import AutoConfig

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip
    target = write_small_target(tmp_path / "t", rope_parameters=rope)
    init_draft(target, SMALL, tmp_path / "d")
    raw = json.loads((tmp_path / "d" / "config.json").read_text())
    assert raw["rope_theta"] == 500000.0
    assert raw["rope_scaling"]["rope_type"] == "llama3" and raw["rope_scaling"]["factor"] == 8.0
    assert AutoConfig.from_pretrained(tmp_path / "d").rope_parameters["rope_type"] == "llama3"

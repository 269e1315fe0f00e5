"""Derive a small Llama draft's config from a target, and write a random-init draft.

A draft is only useful for speculative decoding if it shares the target's tokenizer exactly:
vocabulary size, special token ids, chat template. Everything else (width, depth, heads) is free,
so the caller chooses a `DraftSize`, a preset name or "scaled" (`draft_sizes.py`) and the rest is
copied from the target here: vocabulary, special token ids, RoPE (theta and scaling), norm epsilon,
activation, and the context (capped at 2048). Invalid sizes, and sizes that cannot carry the
target's settings (a context longer than the target's, a long-RoPE factor table of another
head_dim, special ids past the vocabulary), are refused before any tensor is allocated, with the
offending setting named in the message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastdraft_dag.core.tokenizers import copy_tokenizer_files
from fastdraft_dag.draft.sizes import (  # re-exported: profiles and callers import them here
    PRESETS,
    DraftConfigError,
    DraftSize,
    estimate_parameters,
    resolve_size,
    scaled_size,
    validate_size,
)

if TYPE_CHECKING:
    from transformers import LlamaConfig

__all__ = [
    "PRESETS",
    "DraftConfigError",
    "DraftSize",
    "derive_draft_config",
    "estimate_parameters",
    "init_draft",
    "scaled_size",
    "validate_size",
]

MAX_DRAFT_CONTEXT = 2048


def _target_config(target_dir: Path) -> dict[str, Any]:
    path = Path(target_dir) / "config.json"
    if not path.is_file():
        raise DraftConfigError(f"target {str(target_dir)!r}: no config.json")
    return json.loads(path.read_text())


def _rope_parameters(src: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 writes `rope_parameters`; 4.x configs carry `rope_theta`/`rope_scaling`."""
    if src.get("rope_parameters"):
        return dict(src["rope_parameters"])
    rope = dict(src.get("rope_scaling") or {"rope_type": "default"})
    rope.setdefault("rope_type", rope.pop("type", "default"))
    rope["rope_theta"] = float(src.get("rope_theta", 10000.0))
    return rope


def _tokenizer_length(target_dir: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(target_dir))


def _check_against_target(size: DraftSize, src: dict[str, Any], rope: dict[str, Any]) -> None:
    """Settings a draft of this shape cannot take from this target, named."""
    target_ctx = src.get("max_position_embeddings")
    if size.max_position_embeddings and target_ctx and size.max_position_embeddings > target_ctx:
        raise DraftConfigError(
            f"draft max_position_embeddings={size.max_position_embeddings} exceeds the target's "
            f"{target_ctx}: speculative decoding never reaches those positions"
        )
    head_dim = size.hidden_size // size.num_heads
    for key in ("short_factor", "long_factor"):  # longrope (Phi-3 128k): one factor per dim pair
        factors = rope.get(key)
        if factors is not None and len(factors) != head_dim // 2:
            raise DraftConfigError(
                f"target rope_type {rope.get('rope_type')!r} has {len(factors)} {key} entries "
                f"(one per rotary pair of the target's head_dim {2 * len(factors)}); the draft's "
                f"head_dim={head_dim} (hidden_size/num_heads) must be {2 * len(factors)}"
            )
    vocab = int(src["vocab_size"])
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        ids = src.get(key)
        ids = ids if isinstance(ids, list) else [] if ids is None else [ids]
        if any(int(i) >= vocab or int(i) < 0 for i in ids):
            raise DraftConfigError(f"target {key}={src.get(key)} is outside vocab_size={vocab}")


def derive_draft_config(target_dir: Path, size: DraftSize | str) -> LlamaConfig:
    """A LlamaConfig with the target's vocabulary, special ids, RoPE and norm epsilon.

    `size` is a DraftSize, a preset name (`PRESETS`) or "scaled[:fraction]" of the target.
    """
    from transformers import LlamaConfig

    if isinstance(size, DraftSize):
        validate_size(size)  # before the target is read: a bad shape fails fast
    src = _target_config(target_dir)
    size = resolve_size(size, src)
    validate_size(size)
    rope = _rope_parameters(src)
    _check_against_target(size, src, rope)
    vocab_size = int(src["vocab_size"])
    tokenizer_len = _tokenizer_length(target_dir)
    if tokenizer_len > vocab_size:
        raise DraftConfigError(
            f"target tokenizer has {tokenizer_len} tokens but vocab_size={vocab_size}: "
            "token ids would index past the embedding"
        )
    target_ctx = int(src.get("max_position_embeddings") or MAX_DRAFT_CONTEXT)
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_kv_heads,
        head_dim=size.hidden_size // size.num_heads,
        max_position_embeddings=size.max_position_embeddings or min(target_ctx, MAX_DRAFT_CONTEXT),
        rope_parameters=rope,
        rms_norm_eps=float(src.get("rms_norm_eps", 1e-5)),
        hidden_act=src.get("hidden_act", "silu"),
        bos_token_id=src.get("bos_token_id"),
        eos_token_id=src.get("eos_token_id"),
        pad_token_id=src.get("pad_token_id"),
        unk_token_id=src.get("unk_token_id"),
        tie_word_embeddings=size.tie_word_embeddings,
    )


def count_parameters(model: Any) -> dict[str, int]:
    """Total and non-embedding parameters (tied LM head counted once, as the paper does)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return {"parameters": total, "non_embedding_parameters": total - embedding}


def _add_legacy_rope_keys(config_path: Path) -> None:
    """Also write `rope_theta` (and `rope_scaling` for scaled RoPE, e.g. Llama 3.1's "llama3") at
    the top level: transformers 4.x (the Gaudi env) ignores `rope_parameters` and would silently
    train with theta 10000 and no scaling. transformers 5 accepts both."""
    config = json.loads(config_path.read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default" and not config.get("rope_scaling"):
        config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def target_embedding_projection(target_dir: Path, hidden_size: int) -> Any:
    """The target's input embedding reduced to `hidden_size` columns by SVD.

    A draft shares the target's vocabulary, so it can start from the target's knowledge of which
    tokens are alike instead of from noise. The top singular directions keep most of that
    structure; rows are rescaled to the usual init std so training dynamics stay standard.
    """
    import torch
    from safetensors import safe_open

    weights = sorted(Path(target_dir).glob("*.safetensors"))
    for path in weights:
        with safe_open(str(path), framework="pt") as f:
            if "model.embed_tokens.weight" in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
                emb = f.get_tensor("model.embed_tokens.weight").float()
                break
    else:
        raise DraftConfigError(
            f"target {str(target_dir)!r}: no model.embed_tokens.weight to project"
        )
    if hidden_size > emb.shape[1]:
        raise DraftConfigError(
            f"init_embeddings='target': hidden_size {hidden_size} exceeds the target's {emb.shape[1]}"
        )
    emb = emb - emb.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(emb, full_matrices=False)
    proj = u[:, :hidden_size] * s[:hidden_size]
    return proj * (0.02 / proj.std())


def init_draft(
    target_dir: Path,
    size: DraftSize | str,
    out_dir: Path,
    seed: int = 0,
    init_embeddings: str = "random",
) -> dict[str, int]:
    """Write a fresh draft (safetensors + the target's tokenizer files) to `out_dir`.

    `init_embeddings="target"` starts the tied embedding / LM head from the target's embedding
    (see `target_embedding_projection`); "random" is the usual normal init.
    """
    import torch
    from transformers import LlamaForCausalLM

    if init_embeddings not in ("random", "target"):
        raise DraftConfigError(
            f"init_embeddings {init_embeddings!r}: expected 'random' or 'target'"
        )
    config = derive_draft_config(target_dir, size)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if init_embeddings == "target":
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(
                target_embedding_projection(target_dir, config.hidden_size)
            )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    _add_legacy_rope_keys(out_dir / "config.json")
    copy_tokenizer_files(target_dir, out_dir)
    return count_parameters(model)

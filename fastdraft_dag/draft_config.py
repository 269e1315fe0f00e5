"""Derive a small Llama draft's config from a target, and write a random-init draft.

A draft is only useful for speculative decoding if it shares the target's tokenizer exactly:
vocabulary size, special token ids, chat template. Everything else (width, depth, heads) is free,
so the caller chooses a `DraftSize` and the rest is copied from the target here. Invalid sizes are
refused before any tensor is allocated, with the offending setting named in the message.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import LlamaConfig

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)
MAX_DRAFT_CONTEXT = 2048


class DraftConfigError(ValueError):
    """A draft size or target that cannot make a valid draft; the message names the setting."""


@dataclass(frozen=True)
class DraftSize:
    """The free part of a draft's architecture; everything else comes from the target."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_position_embeddings: int | None = None  # None: min(target's, 2048)


def validate_size(size: DraftSize) -> None:
    """Refuse shapes that would fail deep inside transformers (or train a broken RoPE)."""
    for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
        if getattr(size, name) <= 0:
            raise DraftConfigError(f"draft {name}={getattr(size, name)} must be positive")
    if size.max_position_embeddings is not None and size.max_position_embeddings <= 0:
        raise DraftConfigError(
            f"draft max_position_embeddings={size.max_position_embeddings} must be positive"
        )
    if size.hidden_size % size.num_heads:
        raise DraftConfigError(
            f"draft hidden_size={size.hidden_size} is not divisible by num_heads={size.num_heads}"
        )
    if size.num_heads % size.num_kv_heads:
        raise DraftConfigError(
            f"draft num_heads={size.num_heads} is not divisible by num_kv_heads={size.num_kv_heads}"
        )
    head_dim = size.hidden_size // size.num_heads
    if head_dim % 2:
        raise DraftConfigError(
            f"draft head_dim={head_dim} (hidden_size/num_heads) is odd; rotary embeddings need "
            "an even head_dim"
        )


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


def derive_draft_config(target_dir: Path, size: DraftSize) -> LlamaConfig:
    """A LlamaConfig with the target's vocabulary, special ids, RoPE and norm epsilon."""
    from transformers import LlamaConfig

    validate_size(size)
    src = _target_config(target_dir)
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
        rope_parameters=_rope_parameters(src),
        rms_norm_eps=float(src.get("rms_norm_eps", 1e-5)),
        hidden_act=src.get("hidden_act", "silu"),
        bos_token_id=src.get("bos_token_id"),
        eos_token_id=src.get("eos_token_id"),
        pad_token_id=src.get("pad_token_id"),
        unk_token_id=src.get("unk_token_id"),
        tie_word_embeddings=True,
    )


def copy_tokenizer_files(src_dir: Path, out_dir: Path) -> list[str]:
    """Copy tokenizer, special tokens, chat template: the draft must speak the target's tokens."""
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(src_dir) / name).is_file():
            shutil.copy2(Path(src_dir) / name, Path(out_dir) / name)
            copied.append(name)
    return copied


def count_parameters(model: Any) -> dict[str, int]:
    """Total and non-embedding parameters (tied LM head counted once, as the paper does)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    return {"parameters": total, "non_embedding_parameters": total - embedding}


def _add_legacy_rope_keys(config_path: Path) -> None:
    """Also write `rope_theta` at the top level: transformers 4.x (the Gaudi env) ignores
    `rope_parameters` and would silently train with theta 10000. transformers 5 accepts both."""
    config = json.loads(config_path.read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" in rope and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
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
    target_dir: Path, size: DraftSize, out_dir: Path, seed: int = 0, init_embeddings: str = "random"
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
                target_embedding_projection(target_dir, size.hidden_size)
            )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    _add_legacy_rope_keys(out_dir / "config.json")
    copy_tokenizer_files(target_dir, out_dir)
    return count_parameters(model)

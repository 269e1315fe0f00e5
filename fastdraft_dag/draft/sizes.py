"""Draft shapes: the free part of a draft's architecture, presets, and sizing from the target.

A draft must copy the target's vocabulary, special tokens and RoPE (`draft_config.py`); its width
and depth are free. The FastDraft paper used ~50M parameters for Phi-3-mini (32k vocabulary) and
~150M for Llama-3.1-8B (128k vocabulary; most of those parameters are the tied embedding / LM
head). `PRESETS` holds shapes that land there, and `scaled_size` picks one for any target from a
parameter budget (a fraction of the target's size, ~1.3-1.9% in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fastdraft_dag.core.errors import InputError


class DraftConfigError(InputError):
    """A draft size or target that cannot make a valid draft; the message names the setting."""


@dataclass(frozen=True)
class DraftSize:
    """The free part of a draft's architecture; everything else comes from the target."""

    hidden_size: int  # width (d_model) of a random-init draft
    num_layers: int  # decoder layers of a random-init draft
    num_heads: int  # attention heads; hidden_size / num_heads must be even
    num_kv_heads: int  # key/value heads (GQA); must divide num_heads
    intermediate_size: int  # SwiGLU MLP width
    max_position_embeddings: int | None = None  # None: min(target's, 2048)
    # Tied: the LM head reuses the embedding. With a 49k-152k vocabulary an untied head would
    # double a small draft's size (and bytes read per token) for little acceptance gain.
    tie_word_embeddings: bool = True


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


def estimate_parameters(size: DraftSize, vocab_size: int) -> int:
    """Parameters of a Llama draft of this shape (tied head counted once), without building it."""
    d, head_dim = size.hidden_size, size.hidden_size // size.num_heads
    attn = 2 * d * size.num_heads * head_dim + 2 * d * size.num_kv_heads * head_dim
    layer = attn + 3 * d * size.intermediate_size + 2 * d  # + two RMSNorm weights
    head = 0 if size.tie_word_embeddings else vocab_size * d
    return vocab_size * d + size.num_layers * layer + d + head


def _shape(hidden: int, layers: int) -> DraftSize:
    """The family every preset and scaled size uses: head_dim 64 (32 below d=256), GQA 3:1 or
    2:1, SwiGLU width 8/3 x d rounded up to a multiple of 64 (Llama's rule)."""
    head_dim = 64 if hidden >= 256 else 32
    heads = hidden // head_dim
    kv = heads // 3 if heads % 3 == 0 else max(1, heads // 2)
    ff = -(-(8 * hidden // 3) // 64) * 64
    return DraftSize(hidden, layers, heads, kv, ff)


PRESETS: dict[str, DraftSize] = {
    "tiny": DraftSize(64, 2, 4, 2, 128),  # tests and plumbing
    "small-d128": _shape(128, 4),  # the `default` profile's draft (~7M with a 49k vocabulary)
    "fastdraft-50m": _shape(768, 4),  # paper, Phi-3-mini (32k vocab): 49.8M
    "fastdraft-150m": _shape(768, 8),  # paper, Llama-3.1-8B (128k vocab): 148.8M
}
WIDTHS = (128, 256, 384, 512, 640, 768, 1024, 1280, 1536, 2048)


def target_parameters(src: dict[str, Any]) -> int:
    """A Llama-style target's parameter count from its config.json (no weights needed)."""
    d, heads = int(src["hidden_size"]), int(src["num_attention_heads"])
    size = DraftSize(
        d,
        int(src["num_hidden_layers"]),
        heads,
        int(src.get("num_key_value_heads") or heads),
        int(src["intermediate_size"]),
        tie_word_embeddings=bool(src.get("tie_word_embeddings", False)),
    )
    return estimate_parameters(size, int(src["vocab_size"]))


def scaled_size(src: dict[str, Any], fraction: float = 0.015) -> DraftSize:
    """A draft of ~`fraction` of the target's parameters: depth ~1/8 of the target's (2-8 layers,
    shallow drafts decode fast), then the width (at most half the target's) closest to budget."""
    if not 0 < fraction < 1:
        raise DraftConfigError(f"draft size fraction={fraction} must be in (0, 1)")
    budget = fraction * target_parameters(src)
    layers = min(8, max(2, round(int(src["num_hidden_layers"]) / 8)))
    widths = [w for w in WIDTHS if w <= int(src["hidden_size"]) // 2] or [WIDTHS[0]]
    vocab = int(src["vocab_size"])
    return min(
        (_shape(w, layers) for w in widths),
        key=lambda s: abs(estimate_parameters(s, vocab) - budget),
    )


def resolve_size(size: DraftSize | str, src: dict[str, Any]) -> DraftSize:
    """A DraftSize as given, a preset by name, or "scaled" / "scaled:<fraction>" for this target."""
    if isinstance(size, DraftSize):
        return size
    if size.startswith("scaled"):
        fraction = float(size.split(":", 1)[1]) if ":" in size else 0.015
        return scaled_size(src, fraction)
    if size not in PRESETS:
        raise DraftConfigError(
            f"draft size {size!r}: unknown (presets: {', '.join(PRESETS)}, scaled[:fraction])"
        )
    return PRESETS[size]


def with_context(size: DraftSize, max_position_embeddings: int) -> DraftSize:
    return replace(size, max_position_embeddings=max_position_embeddings)

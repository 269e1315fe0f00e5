"""Drafts derived from the target, and drafts with a trimmed LM head.

A derived draft keeps the target's width and starts from the target's own tensors: its embedding,
a chosen subset of its decoder layers (renumbered 0..N-1), its final norm and its LM head. It
starts from the target's training instead of random weights (LayerSkip, Kangaroo).

A trimmed draft's head keeps only the rows of `draft_vocab.json` (the K most frequent tokens of
the target's responses, draft/vocab.py): its step and its training cost a K-row head instead of a
49k-row one. Its input embedding stays full, so any prompt token can be read. On disk it is a
plain Hugging Face directory of a *full-vocabulary* model of the target's architecture (transformers
loads it as an untrimmed draft whose dropped rows are the embedding's) plus `draft_vocab.json`; `load_draft`
re-applies the trim, `save_draft` undoes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdraft_dag.core.tokenizers import copy_tokenizer_files
from fastdraft_dag.draft.vocab import VOCAB_FILE, load_vocab, save_vocab

# Architectures whose decoder layers can be lifted out of the target one by one (tested each:
# tests/draft/test_draft_recipe.py).
DERIVABLE = ("llama", "mistral", "qwen2")
FILL = -1.0e4  # logit of a token the trimmed head dropped: exactly 0 probability in f16 and f32


def read_state(model_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model's safetensors files (one or sharded)."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def pick_layers(n_target: int, n: int, how: str) -> list[int]:
    """`first`: layers 0..n-1; `spread`: n layers spread evenly, always the first and the last."""
    if not 0 < n <= n_target:
        raise ValueError(f"draft.layers: {n}, expected 1..{n_target} (the target's layers)")
    if how == "first":
        return list(range(n))
    if how == "spread":
        return sorted({round(i * (n_target - 1) / max(n - 1, 1)) for i in range(n)})
    raise ValueError(f"draft.layer_choice {how!r}: expected 'first' or 'spread'")


def trim_head(model: Any, keep_ids: Sequence[int]) -> Any:
    """Replace the LM head by its rows `keep_ids` (an untied copy): logits column j = keep_ids[j]."""
    ids = torch.as_tensor(np.asarray(keep_ids, dtype=np.int64))
    full = model.get_output_embeddings().weight.detach()
    head = torch.nn.Linear(full.shape[1], len(ids), bias=False, dtype=full.dtype)
    head.weight.data.copy_(full[ids])
    model.lm_head = head
    model.config.tie_word_embeddings = False
    model.kept_ids = ids
    return model


def kept_ids_of(model: Any) -> torch.Tensor | None:
    return getattr(model, "kept_ids", None)


def derive_from_target(target_dir: Path, layers: Sequence[int]) -> Any:
    """A model of the target's own architecture (Qwen2 keeps its attention biases) made of the
    target's embedding, decoder `layers`, final norm and head."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(target_dir)
    if config.model_type not in DERIVABLE:
        raise ValueError(
            f"a target-derived draft needs a target of architecture {', '.join(DERIVABLE)}; "
            f"{target_dir} is {config.model_type!r}: use draft.init='random'"
        )
    n_target = config.num_hidden_layers
    if not layers or any(not 0 <= i < n_target for i in layers):
        raise ValueError(f"draft layers {list(layers)}: need indices in 0..{n_target - 1}")
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in layers]
    src = read_state(target_dir)
    state = {
        f"model.layers.{new}.{name[len(f'model.layers.{old}.') :]}": t.float()
        for new, old in enumerate(layers)
        for name, t in src.items()
        if name.startswith(f"model.layers.{old}.")
    }
    state["model.embed_tokens.weight"] = src["model.embed_tokens.weight"].float()
    state["model.norm.weight"] = src["model.norm.weight"].float()
    tied = "lm_head.weight" not in src
    config.tie_word_embeddings = tied
    model = AutoModelForCausalLM.from_config(config).float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"derive_from_target: missing {missing}, unexpected {unexpected}")
    if not tied:
        model.lm_head.weight.data.copy_(src["lm_head.weight"].float())
    return model.eval()


def full_head_weight(model: Any) -> torch.Tensor:
    """The [full vocabulary, hidden] head of a (trimmed) model; dropped rows from the embedding."""
    ids = kept_ids_of(model)
    if ids is None:
        return model.get_output_embeddings().weight.detach().clone()
    full = model.get_input_embeddings().weight.detach().clone()
    full[ids] = model.get_output_embeddings().weight.detach().to(full.dtype)
    return full


def save_draft(model: Any, out_dir: Path, **meta: object) -> Path:
    """A full-vocabulary HF directory (+ `draft_vocab.json` for a trimmed draft)."""
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = kept_ids_of(model)
    if ids is None:
        model.save_pretrained(out_dir, safe_serialization=True)
        (out_dir / VOCAB_FILE).unlink(missing_ok=True)
        return out_dir
    config = model.config.__class__.from_dict(model.config.to_dict())
    emb = model.get_input_embeddings().weight.detach()
    full = full_head_weight(model)
    config.tie_word_embeddings = bool(torch.equal(full, emb))
    plain = AutoModelForCausalLM.from_config(config).to(emb.dtype)
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}, strict=False
    )
    if not config.tie_word_embeddings:
        plain.lm_head.weight.data.copy_(full)
    plain.save_pretrained(out_dir, safe_serialization=True)
    save_vocab(out_dir, ids.tolist(), int(emb.shape[0]), **meta)
    return out_dir


def load_draft(model_dir: Path, trimmed: bool = True) -> Any:
    """fp32 eval-mode model; with `trimmed` and a `draft_vocab.json`, its head re-trimmed."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = load_vocab(Path(model_dir))
    if trimmed and vocab is not None:
        trim_head(model, vocab[0])
    return model


def to_full_vocab(logits: torch.Tensor, kept: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Trimmed logits [..., K] scattered into [..., vocab_size] at FILL: what the IR computes."""
    full = logits.new_full((*logits.shape[:-1], vocab_size), FILL)
    full[..., kept] = logits
    return full


class ScatteredHead(torch.nn.Module):
    """A trimmed head whose output is full-vocabulary again (dropped ids at FILL)."""

    def __init__(self, head: torch.nn.Module, kept: torch.Tensor, vocab_size: int) -> None:
        super().__init__()
        self.head, self.kept, self.vocab_size = head, kept, vocab_size

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return to_full_vocab(self.head(hidden), self.kept, self.vocab_size)


class FullVocabLogits(torch.nn.Module):
    """A trimmed draft that returns full-vocabulary logits (dropped ids at FILL), as its IR does.

    Acceptance measurements (the gate, offline evaluation) compare argmaxes with the target's over
    the full vocabulary; this makes the PyTorch draft score exactly what the exported one proposes.
    """

    def __init__(self, model: Any, vocab_size: int) -> None:
        super().__init__()
        self.model, self.vocab_size = model, vocab_size
        self.config = model.config

    def get_output_embeddings(self) -> ScatteredHead:
        """The head as callers that score positions themselves (the gate) must see it."""
        return ScatteredHead(
            self.model.get_output_embeddings(), kept_ids_of(self.model), self.vocab_size
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model(*args, **kwargs)
        out.logits = to_full_vocab(out.logits, kept_ids_of(self.model), self.vocab_size)
        return out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)


def load_fp32_model(model_dir: Path) -> Any:
    """The model every acceptance measurement uses: fp32, eval mode, full-vocabulary logits."""
    model = load_draft(model_dir, trimmed=True)
    vocab = load_vocab(Path(model_dir))
    return FullVocabLogits(model, vocab[1]) if vocab is not None else model


def init_derived(
    target_dir: Path, layers: Sequence[int], out_dir: Path, keep_ids: Sequence[int] | None = None
) -> dict[str, int]:
    """Write a target-derived draft (trimmed to `keep_ids` when given) with the target's tokenizer."""
    model = derive_from_target(target_dir, layers)
    if keep_ids is not None:
        trim_head(model, keep_ids)
    save_draft(model, out_dir, layers=list(layers))
    copy_tokenizer_files(target_dir, out_dir)
    head = model.get_output_embeddings().weight
    emb = model.get_input_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    return {
        "parameters": total,
        "embedding_parameters": emb.numel(),
        "head_rows": int(head.shape[0]),
        "decoder_parameters": total - emb.numel() - (0 if head is emb else head.numel()),
    }

"""A random tiny Llama that shares a real target's tokenizer, for the `tiny` profile and tests.

It exercises every step of the graph (export, speculative decoding, metrics) in seconds. Its
outputs are noise; it is labelled as such wherever it is used, and no real result is claimed for it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from fastdraft_dag.core.files import replace_dir
from fastdraft_dag.core.tokenizers import copy_tokenizer_files


def build_tiny_target(target_dir: Path, out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    src = AutoConfig.from_pretrained(target_dir)
    config = LlamaConfig(
        vocab_size=src.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,  # three distinct taps for an EAGLE-3 head
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=src.max_position_embeddings,
        rope_theta=getattr(src, "rope_theta", 10000.0),
        bos_token_id=src.bos_token_id,
        eos_token_id=src.eos_token_id,
        pad_token_id=getattr(src, "pad_token_id", None),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    model.save_pretrained(tmp, safe_serialization=True)
    copy_tokenizer_files(target_dir, tmp)
    return replace_dir(tmp, out)

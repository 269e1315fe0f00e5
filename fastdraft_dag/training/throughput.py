"""Model FLOPs and model FLOPs utilization (MFU): how much of the hardware a training step uses.

Model FLOPs per token (PaLM, appendix B): `6 N + 12 L H Q T`, where
- N counts the parameters that do a multiply-add per token: every weight matrix of the decoder
  blocks plus the LM head (V x d). The input embedding is a lookup, not a matmul, so a tied
  embedding/head is counted once, as the head. For a draft with a large vocabulary the head is
  most of N, which is why it must be counted (Kaplan et al. leave embeddings out; we cannot).
- 12 L H Q T is attention's score and value products (forward 2 x 2 x L x (H Q) x T per token,
  backward twice that) at sequence length T, without the causal halving, as PaLM counts it.
- 6 = 2 (multiply-add) x 3 (forward, plus a backward that costs twice the forward).
Positions without a label skip the head in our loss, so the head term counts loss tokens only.

MFU = model FLOPs per second / peak FLOPs per second of all devices. The peak is, in order:
1. `peak_flops` from the spec (the resource's `peak_tflops`), when the operator declares it;
2. a declared figure for known accelerators (`DECLARED_PEAK`, dense bf16 from vendor datasheets);
3. on CPU (and unknown accelerators), *measured*: the best of a few square GEMMs in the training
   dtype with this process's threads. That is an achievable peak, not the datasheet number, so CPU
   MFU reads higher than a datasheet-based figure would; it says how close we get to the GEMM speed
   this machine really has.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import torch

# Dense bf16 TFLOPs per device, vendor datasheets. Matched by substring of the device name.
DECLARED_PEAK = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "GAUDI3": 1835e12,
    "GAUDI2": 432e12,
}


def decoder_matmul_params(config: Any) -> int:
    """Weights of the decoder blocks that multiply activations (norms excluded)."""
    d = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or d // heads)
    attn = d * heads * head_dim * 2 + d * kv * head_dim * 2  # q, o + k, v
    mlp = 3 * d * int(config.intermediate_size)  # gate, up, down
    return int(config.num_hidden_layers) * (attn + mlp)


def flops_per_step(config: Any, seq_len: int, tokens: int, loss_tokens: int) -> float:
    """Model FLOPs of one training step over `tokens` inputs, `loss_tokens` of them labelled."""
    d = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or d // heads)
    attention = 12 * int(config.num_hidden_layers) * heads * head_dim * seq_len
    body = 6 * decoder_matmul_params(config) + attention
    head = 6 * int(config.vocab_size) * d
    return float(tokens * body + loss_tokens * head)


@functools.cache
def measure_gemm_flops(device: torch.device, dtype: torch.dtype, size: int = 2048) -> float:
    """Best FLOP/s of square GEMMs over ~1 s (at least 3): the achievable peak of this device at
    this thread count. The best, not the mean, because a shared machine only ever slows a GEMM
    down. Cached per process: it costs about a second on a 2-core CPU."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 3 or (spent < 1.0 and reps < 50):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        took = time.perf_counter() - start
        best, spent, reps = min(best, took), spent + took, reps + 1
    return 2 * size**3 / best


def device_name(backend: str) -> str:
    if backend == "cuda":
        return torch.cuda.get_device_name()
    if backend == "hpu":
        return "GAUDI2"  # habana_frameworks exposes the type; the Gaudi path passes it in
    return "cpu"


def peak_flops(
    backend: str, device: torch.device, dtype: torch.dtype, declared: float = 0.0
) -> tuple[float, str]:
    """(peak FLOP/s per device, where the figure came from)."""
    if declared > 0:
        return declared, "declared by the resource (peak_tflops)"
    name = device_name(backend).upper().replace(" ", "")
    for key, value in DECLARED_PEAK.items():
        if key in name:
            return value, f"datasheet dense bf16 for {key}"
    return measure_gemm_flops(device, dtype), f"measured GEMM on {backend} ({dtype})"


def mfu(flops: float, seconds: float, peak: float, world_size: int = 1) -> float:
    """Model FLOPs utilization of `flops` done in `seconds` on `world_size` devices."""
    if seconds <= 0 or peak <= 0:
        return 0.0
    return flops / seconds / (peak * world_size)

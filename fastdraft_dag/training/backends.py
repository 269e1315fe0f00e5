"""Which accelerator the trainer runs on, decided once and loudly.

A run that asked for Gaudi (or CUDA) and quietly fell back to the CPU would take days and look like
success, so an explicit request for an absent backend is an error. `auto` picks the best present.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

BACKENDS = ("hpu", "cuda", "cpu")


class BackendUnavailableError(RuntimeError):
    """The requested backend is not present on this machine (or in this environment)."""


def habana_available() -> bool:
    """True when the Gaudi PyTorch bridge imports. Module-level so tests can monkeypatch it.

    On machines without Gaudi, optimum-habana and habana_frameworks fail with IndexError or
    RuntimeError rather than ImportError, so every exception means "absent".
    """
    try:
        importlib.import_module("habana_frameworks.torch")
    except Exception:
        return False
    return True


def cuda_available() -> bool:
    return torch.cuda.is_available()


def detect_backend() -> str:
    """The best backend present: hpu, then cuda, then cpu."""
    if habana_available():
        return "hpu"
    if cuda_available():
        return "cuda"
    return "cpu"


def resolve_backend(requested: str, detected: str | None = None) -> str:
    """`auto` -> what is present; an explicit backend must be present. `detected` may come from
    probing another interpreter (the trainer's own environment)."""
    if requested not in (*BACKENDS, "auto"):
        raise ValueError(f"backend {requested!r}: expected one of auto, {', '.join(BACKENDS)}")
    detected = detected or detect_backend()
    if requested == "auto":
        return detected
    if requested != "cpu" and requested != detected:
        raise BackendUnavailableError(
            f"backend {requested!r} requested but not available here (detected {detected!r}); "
            "refusing to fall back to the CPU. Use backend='auto' or 'cpu' to train on the CPU."
        )
    return requested


def device_for(backend: str) -> torch.device:
    """The torch device for a resolved backend (importing the Gaudi bridge registers `hpu`)."""
    if backend == "hpu":
        importlib.import_module("habana_frameworks.torch.core")
    return torch.device(backend)


def cpu_has_fast_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has native bf16 matmuls (AMX or AVX512-BF16). oneDNN "supports" bf16 on
    any AVX512 CPU by emulation, which is slower than fp32 (a 2-core Xeon with AVX512 but no
    AVX512-BF16: 2.6x slower per MLP step, and alignment ~5x slower), so the flags decide."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:  # not Linux: fp32 is the safe choice
        return False
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def bf16_native(backend: str) -> bool:
    """Whether bf16 autocast is fast here: the one detector for training and KD generation."""
    if backend == "hpu":
        return True
    if backend == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


if __name__ == "__main__":  # `python -m ...backends` lets a launcher probe another environment
    print(detect_backend())

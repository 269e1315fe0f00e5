"""Loading a Hugging Face causal LM the way every acceptance measurement needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_fp32_model(model_dir: Path) -> Any:
    """fp32 eval-mode model: the reference precision for acceptance (gate and benchmark alike)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

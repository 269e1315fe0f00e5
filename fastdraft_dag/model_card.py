"""A model card (README.md) in the Hugging Face layout, so the metrics travel with the weights."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_model_card(
    model_dir: Path, title: str, target: str, metrics: Mapping[str, Any], lineage: Mapping[str, str]
) -> None:
    front = "---\nlibrary_name: transformers\ntags:\n- speculative-decoding\n- fastdraft\n---\n"
    body = [
        f"# {title}",
        "",
        f"A FastDraft draft model for `{target}`: same tokenizer, vocabulary, special tokens and chat"
        " template, meant as `assistant_model` / `draft_model` in speculative decoding.",
        "",
        "## Metrics",
        "```json",
        json.dumps(metrics, indent=2, default=str),
        "```",
        "",
        "## Lineage",
        *[f"- {k}: `{v}`" for k, v in lineage.items()],
        "",
    ]
    (Path(model_dir) / "README.md").write_text(front + "\n".join(body))

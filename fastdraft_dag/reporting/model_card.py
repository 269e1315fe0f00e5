"""A model card (README.md) in the Hugging Face layout, so the metrics travel with the weights."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Headline training figures, in the order a reader wants them: (metrics key, label, format).
TRAINING_FIGURES = (
    ("parameters", "parameters", "{:,}"),
    ("val_loss", "validation loss (last stage)", "{:.4f}"),
    ("tokens", "training tokens", "{:,}"),
    ("tokens_per_s", "throughput (tokens/s, all devices)", "{:,.0f}"),
    ("mfu", "model FLOPs utilization", "{:.1%}"),
    ("peak_flops_per_device", "peak FLOP/s per device (MFU denominator)", "{:.3g}"),
    ("peak_flops_source", "peak figure from", "{}"),
    ("backend", "backend", "{}"),
    ("world_size", "devices (processes)", "{}"),
    ("dtype", "precision requested", "{}"),
    ("bf16_autocast", "bf16 autocast used", "{}"),
    ("train_seconds", "training time (s)", "{:,.0f}"),
)


def training_table(metrics: Mapping[str, Any]) -> list[str]:
    """A markdown table of the headline figures present in `metrics` (none: no table)."""
    rows = []
    for key, label, fmt in TRAINING_FIGURES:
        value = metrics.get(key)
        if value is None:
            continue
        try:
            rows.append(f"| {label} | {fmt.format(value)} |")
        except (TypeError, ValueError):
            rows.append(f"| {label} | {value} |")
    stages = [s for s in metrics.get("stages", []) if isinstance(s, Mapping)]
    for s in stages:
        loss = s.get("val_loss")
        rows.append(
            f"| stage `{s.get('name')}` | {s.get('steps')} steps, val loss "
            f"{loss if loss is None else round(loss, 4)}, {s.get('tokens_per_s', 0):,.0f} tok/s |"
        )
    return ["| figure | value |", "|---|---|", *rows] if rows else []


def write_model_card(
    model_dir: Path, title: str, target: str, metrics: Mapping[str, Any], lineage: Mapping[str, str]
) -> None:
    front = "---\nlibrary_name: transformers\ntags:\n- speculative-decoding\n- fastdraft\n---\n"
    table = training_table(metrics)
    body = [
        f"# {title}",
        "",
        f"A FastDraft draft model for `{target}`: same tokenizer, vocabulary, special tokens and chat"
        " template, meant as `assistant_model` / `draft_model` in speculative decoding.",
        "",
        *(["## Training", "", *table, ""] if table else []),
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


def release_card(
    *,
    target: str,
    draft_precision: str,
    best_k: int,
    device: str,
    summary_md: str,
    images: Mapping[str, str],
    lineage: Mapping[str, str],
) -> str:
    """README.md of the deployable draft IR: how to run it, the k it ships with, its numbers.

    ``summary_md`` holds the offline and live tables (``report.render_benchmark``); ``images``
    maps alt text to PNG file names next to the card.
    """
    front = (
        "---\nlibrary_name: openvino\ntags:\n- speculative-decoding\n- fastdraft\n- openvino\n---\n"
    )
    usage = [
        "```python",
        "import openvino_genai as ov_genai",
        "",
        f'draft = ov_genai.draft_model("draft-ir", "{device}")',
        f'pipe = ov_genai.LLMPipeline("<target IR dir>", "{device}", draft_model=draft)',
        "config = pipe.get_generation_config()",
        f"config.num_assistant_tokens = {best_k}  # also the default in draft-ir/generation_config.json",
        'print(pipe.generate("def fibonacci(n):", config))',
        "```",
    ]
    body = [
        f"# FastDraft draft for `{target}` ({draft_precision} OpenVINO IR)",
        "",
        f"A draft model for speculative decoding with `{target}`: same tokenizer, vocabulary,"
        " special tokens and chat template. `draft-ir/` is the OpenVINO IR; its"
        f" `generation_config.json` sets `num_assistant_tokens = {best_k}`, the k with the highest"
        f" measured speculative-decoding throughput on `{device}` (pooled over all prompts).",
        "",
        "## Usage",
        "",
        *usage,
        "",
        "## Benchmark",
        "",
        summary_md,
        "",
        *[line for alt, name in images.items() for line in (f"![{alt}]({name})", "")],
        "## Lineage",
        *[f"- {k}: `{v}`" for k, v in lineage.items()],
        "",
    ]
    return front + "\n".join(body)

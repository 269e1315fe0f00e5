"""A model card (README.md) in the Hugging Face layout, so the metrics travel with the weights."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from fastdraft_dag.core.files import write_text_atomic
from fastdraft_dag.reporting.tables import interval
from fastdraft_dag.reporting.usage import (
    EAGLE3,
    LOOKUP,
    SD,
    openvino_snippet,
    transformers_snippet,
)

# The card reads the mode choice as plain data (``evaluation.modes.ModeChoice.to_dict``): this
# package sits below the stages and never imports them.
Figures = Mapping[str, Any]

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
    front = ModelCardData(library_name="transformers", tags=["speculative-decoding", "fastdraft"])
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
    write_text_atomic(Path(model_dir) / "README.md", card_text(front, "\n".join(body)))


def _label(f: Figures) -> str:
    """``sd k=3``, ``sd threshold=0.3``, ``prompt_lookup k=4``, ``plain``."""
    if f.get("confidence_threshold") is not None:
        return f"{f['mode']} threshold={f['confidence_threshold']:g}"
    return f["mode"] if f.get("k") is None else f"{f['mode']} k={f['k']}"


def _figure(f: Figures) -> str:
    """``1.234x plain (95% interval [1.10, 1.35])`` for a measured mode."""
    ci = interval(f.get("speedup_ci_low"), f.get("speedup_ci_high"))
    return f"{f['speedup']:.3f}x plain" + (f" (95% interval {ci})" if ci else "")


def recommendation(choice: Mapping[str, Any], device: str) -> list[str]:
    """The card's plain-words verdict: which mode to run, and how far the draft is from winning.

    Never recommends a mode slower than plain decoding: the chosen mode is the fastest measured,
    plain included (``evaluation.modes.choose_mode``).
    """
    chosen, lookup = choice["chosen"], choice.get("best_lookup")
    sd = choice.get("best_draft") or choice.get("best_sd")
    where = f"on `{device}`, pooled over all benchmark prompts"
    if chosen["mode"] in (SD, EAGLE3):
        what = "this EAGLE-3 head" if chosen["mode"] == EAGLE3 else "this draft"
        lines = [
            f"**Recommended: speculative decoding with {what}, `{_label(chosen)}`**, the"
            f" fastest mode measured {where}: {_figure(chosen)}."
        ]
        other = choice.get("best_sd") if chosen["mode"] == EAGLE3 else choice.get("best_eagle3")
        if other:
            lines.append(f"The other draft kind at its best (`{_label(other)}`): {_figure(other)}.")
        if lookup:
            lines.append(f"Prompt lookup at its best (`{_label(lookup)}`): {_figure(lookup)}.")
        return lines
    if chosen["mode"] == LOOKUP:
        lines = [
            f"**Recommended: prompt lookup decoding (`{_label(chosen)}`), not this draft.** Prompt"
            f" lookup needs no draft model and was the fastest mode measured {where}:"
            f" {_figure(chosen)}."
        ]
        ratio = choice.get("sd_vs_lookup")
        if sd and ratio:
            lines.append(
                f"This draft's best speculative-decoding mode (`{_label(sd)}`) reached"
                f" {_figure(sd)}, i.e. {ratio:.3f} of prompt lookup's tokens/s: it must get"
                f" {1 / ratio:.2f}x faster to beat prompt lookup."
            )
        return lines
    lines = [
        f"**No mode beat plain decoding {where}: run the target alone.** Plain decoding:"
        f" {chosen['tok_s']:.1f} tokens/s."
    ]
    for name, f in (("the draft's best speculative-decoding mode", sd), ("prompt lookup", lookup)):
        if f:
            lines.append(f"Best of {name} (`{_label(f)}`): {_figure(f)}.")
    return lines


def card_text(data: ModelCardData, body: str) -> str:
    """A model card: `data` as YAML front matter (huggingface_hub's own writer, so the hub and
    `ModelCard.load` read it back), then the markdown `body`."""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def card_front_matter(base_model: str | None, license_id: str | None) -> ModelCardData:
    """Hugging Face model-card metadata: the hub shows the base model and license from it."""
    return ModelCardData(
        library_name="transformers",
        base_model=base_model or None,
        license=license_id or "other",
        tags=["speculative-decoding", "fastdraft", "openvino", "assistant-model"],
        pipeline_tag="text-generation",
    )


def release_card(
    *,
    target: str,
    draft_precision: str,
    choice: Mapping[str, Any],
    device: str,
    summary_md: str,
    images: Mapping[str, str],
    lineage: Mapping[str, str],
    prompt_lookup_ngram: int = 3,
    base_model: str | None = None,
    license_id: str | None = None,
) -> str:
    """README.md of the release: the fastest measured mode, how to run it, the numbers.

    ``summary_md`` holds the offline and live tables (``tables.render_benchmark``); ``images``
    maps alt text to PNG file names next to the card; ``choice`` is ``ModeChoice.to_dict()``.
    ``base_model`` / ``license_id`` are the target's hub id and license (the draft inherits its
    tokenizer and weights); the usage snippets are the ones ``tests`` run from the folder.
    """
    chosen = choice["chosen"]
    sd_chosen = chosen["mode"] in (SD, EAGLE3)
    target_ref = base_model or target
    ir_note = (
        f"`draft-ir/` is the draft as OpenVINO IR; its `generation_config.json` sets"
        f" `{_label(chosen)}`."
        if sd_chosen
        else "`draft-ir/` is the draft as OpenVINO IR, shipped for comparison only: its"
        " `generation_config.json` sets no speculative-decoding settings."
    )
    body = [
        f"# FastDraft draft for `{target}` ({draft_precision} OpenVINO IR + transformers)",
        "",
        f"A draft model for speculative decoding with `{target}`: same tokenizer, vocabulary,"
        " special tokens and chat template. Every decoding mode was measured and the fastest is"
        " recommended below (`release.json` holds the figures). This folder loads as-is: the"
        " draft in the Hugging Face layout (`model.safetensors`, `config.json`, tokenizer,"
        " `generation_config.json` with the recommended mode's settings) for transformers'"
        f" assisted generation, and {ir_note}",
        "",
        "## Recommended mode",
        "",
        *[line for text in recommendation(choice, device) for line in (text, "")],
        "## Usage",
        "",
        "transformers, from this folder:",
        "",
        "```python",
        transformers_snippet(chosen, target_ref, prompt_lookup_ngram),
        "```",
        "",
        "openvino_genai, from this folder:",
        "",
        "```python",
        openvino_snippet(chosen, target_ref, device, prompt_lookup_ngram),
        "```",
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
    return card_text(card_front_matter(base_model, license_id), "\n".join(body))

"""Settings of the benchmark: prompt sets, k sweeps, live modes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    prompts_per_family: int = 10
    offline_max_new_tokens: int = 64
    ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    sd_prompts_per_family: int = 4
    sd_max_new_tokens: int = 64
    # Live SD runs once per k; the fastest k (pooled over tasks) is written into the release.
    sd_ks: tuple[int, ...] = (2, 3, 4, 5)
    sd_draft_format: str = "int8"
    prompt_lookup: bool = True  # also time openvino_genai prompt-lookup decoding
    # Optional second draft to compare against (local HF dir, hub id or embedded name); exported
    # by `openvino_ir` as `reference-draft-<sd_draft_format>`.
    reference_draft: str | None = None
    # User JSONL prompt files ({id, task, prompt[, chat]}), added to the built-in four families.
    prompt_files: tuple[str, ...] = ()

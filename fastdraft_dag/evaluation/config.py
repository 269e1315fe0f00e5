"""Settings of the benchmark: prompt sets, k sweeps, live modes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastdraft_dag.core.errors import ConfigError


@dataclass(frozen=True)
class BenchConfig:
    prompts_per_family: int = 10  # prompts per task family in the offline (logit) acceptance
    offline_max_new_tokens: int = 64  # tokens the target greedily writes per prompt, offline
    # draft lengths k at which offline acceptance (tau, MBSU) is computed
    ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    # At least 8 prompts per family: the 95% bootstrap interval over prompts beside each pooled
    # speedup is too wide to tell a gain from noise with fewer.
    sd_prompts_per_family: int = 8
    sd_max_new_tokens: int = 64  # new tokens per prompt in the live benchmark
    # Live SD and prompt lookup each run once per k; the release ships the fastest measured mode.
    sd_ks: tuple[int, ...] = (2, 3, 4, 5)
    # openvino_genai's dynamic draft length (`assistant_confidence_threshold`): the draft keeps
    # proposing while its top-token probability stays above the threshold. One SD run each.
    sd_confidence_thresholds: tuple[float, ...] = (0.3,)
    sd_draft_format: str = "int8"  # draft IR precision used live (must be in export.draft_formats)
    prompt_lookup: bool = True  # also time openvino_genai prompt-lookup decoding
    # Optional second draft to compare against (local HF dir, hub id or embedded name); exported
    # by `openvino_ir` as `reference-draft-<sd_draft_format>`.
    reference_draft: str | None = None
    # User JSONL prompt files ({id, task, prompt[, chat]}), added to the built-in four families.
    prompt_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        counts = (
            "prompts_per_family",
            "offline_max_new_tokens",
            "sd_prompts_per_family",
            "sd_max_new_tokens",
        )
        for name in counts:
            if getattr(self, name) < 1:
                raise ConfigError(f"bench.{name}: {getattr(self, name)}, expected >= 1")
        for name in ("ks", "sd_ks"):
            ks = getattr(self, name)
            if not ks or min(ks) < 1:
                raise ConfigError(f"bench.{name}: {list(ks)}, expected draft lengths >= 1")
        missing = [p for p in self.prompt_files if not Path(p).expanduser().is_file()]
        if missing:
            raise ConfigError(f"bench.prompt_files: {missing} not found (JSONL files expected)")
        bad = [t for t in self.sd_confidence_thresholds if not 0.0 < float(t) < 1.0]
        if bad:
            raise ConfigError(
                f"bench.sd_confidence_thresholds {self.sd_confidence_thresholds}: each must be "
                f"a probability in (0, 1) (bad: {bad})"
            )

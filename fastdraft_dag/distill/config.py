"""Settings of distillation: the KD dataset and the alignment stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastdraft_dag.core.errors import ConfigError as ProfileError
from fastdraft_dag.distill.prompt_sources import PromptSource
from fastdraft_dag.training.config import StageConfig


@dataclass(frozen=True)
class KDConfig:
    n_instruction: int = 400  # built-in instruction prompts (ShareGPT first turns)
    n_code: int = 200  # built-in code prompts (stdlib stubs to complete)
    n_text: int = 0  # raw prose openings to continue (training split of the built-in corpora)
    n_summarization: int = 0  # prose passages with a request to summarize them
    max_new_tokens: int = 128  # longest target answer (tokens); longer ones are truncated
    batch_size: int = 8  # sequences in flight (openvino) or per static batch (torch)
    # {temperature: weight}: each prompt is answered at one temperature drawn by a hash of its
    # id; 0 is greedy. The paper samples at 0.6 / 0.8 / 1.0.
    temperatures: dict[float, float] = field(default_factory=lambda: {0.0: 1.0})
    # "openvino": continuous batching over the target as an fp32 IR (several times faster on
    # CPU, `make bench-kd`); "torch": `generate` in static batches (the only one for Gaudi/CUDA).
    backend: str = "openvino"
    keep_truncated: bool = False  # answers cut at max_new_tokens are dropped and counted
    dtype: str = "auto"  # torch backend: bf16 only where the CPU has native bf16 (else ~2x slower)
    seed: int = 0  # seed of prompt sampling and temperature draws
    max_prompt_chars: int = 2000  # longer prompts are dropped and counted
    # Extra prompt sources (mappings or PromptSource; see prompt_sources.py): user JSONL files
    # and `datasets` loaders, deduplicated with the built-in prompts and checked for overlap
    # with every evaluation text (an overlap fails synthetic_kd_dataset).
    prompt_sources: tuple[PromptSource, ...] = ()

    def prompt_counts(self) -> dict[str, int]:
        """Built-in prompts wanted per family (kd_prompts.builtin_families)."""
        keys = ("n_instruction", "n_code", "n_text", "n_summarization")
        return {k: getattr(self, k) for k in keys}

    def __post_init__(self) -> None:
        parsed = tuple(
            PromptSource.parse(s, f"kd.prompt_sources[{i}]")
            for i, s in enumerate(self.prompt_sources)
        )
        object.__setattr__(self, "prompt_sources", parsed)
        for name in ("max_prompt_chars", "max_new_tokens", "batch_size"):
            if getattr(self, name) <= 0:
                raise ProfileError(f"kd.{name}: {getattr(self, name)}, expected > 0")
        if self.backend not in ("openvino", "torch"):
            raise ProfileError(f"kd.backend {self.backend!r}: expected 'openvino' or 'torch'")
        temps = self.temperatures
        if not temps or any(t < 0 or w < 0 for t, w in temps.items()) or sum(temps.values()) <= 0:
            raise ProfileError(f"kd.temperatures {temps}: need temperatures >= 0, weights > 0")


@dataclass(frozen=True)
class AlignConfig:
    stage: StageConfig  # the alignment training stage (steps, batch, lr, loss, ...)
    max_len: int = 512  # longest KD row (prompt + answer, tokens) trained on
    val_fraction: float = 0.05  # fraction of KD prompts held out for the gate and validation
    # An answer cut at max_new_tokens is still the target's distribution (it only lacks the
    # end-of-turn label, which kd.encode_row leaves off): keep it unless asked otherwise.
    drop_truncated: bool = False
    # Fraction of each alignment batch drawn from the pre-training shards (tokenized_shards,
    # domains by stage.mix), to keep the draft's general text ability while it is fine-tuned.
    pretrain_mix: float = 0.0
    # On-policy distillation (on_policy.py, the simplest DistillSpec): the pretrained draft
    # samples answers to the KD train prompts, the target labels each position with its argmax.
    # `on_policy_fraction` of the non-pretraining rows are on-policy, the rest target-written.
    on_policy: bool = False
    # share of on-policy rows among the non-pretraining rows, in (0, 1]
    on_policy_fraction: float = 1.0
    on_policy_temperature: float = 1.0  # sampling temperature of the draft's on-policy answers
    # The gate (aligned_beats_pretrained) passes when held-out greedy acceptance rises by more
    # than this. Not part of the artifact version: changing it re-judges, it does not retrain.
    gate_min_gain: float = 0.0
    # Logit distillation (stage.loss "fkl" or "tvd"): the target's top-k per answer token,
    # computed once by a teacher pass over the KD rows (teacher_logits.py).
    teacher_topk: int = 32

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 0.5:
            raise ProfileError(f"align.val_fraction: {self.val_fraction}, expected in (0, 0.5)")
        if not 0.0 <= self.pretrain_mix < 1.0:
            raise ProfileError(f"align.pretrain_mix: {self.pretrain_mix}, expected in [0, 1)")
        if not 0.0 < self.on_policy_fraction <= 1.0:
            raise ProfileError(
                f"align.on_policy_fraction: {self.on_policy_fraction}, expected in (0, 1]"
            )
        if self.teacher_topk < 1:
            raise ProfileError(f"align.teacher_topk: {self.teacher_topk}, expected >= 1")
        if self.stage.loss != "ce" and (self.pretrain_mix or self.on_policy):
            raise ProfileError(
                f"align.stage.loss {self.stage.loss!r} needs the target's logits on every row: "
                "set align.pretrain_mix 0 and align.on_policy false (or loss 'ce')"
            )
        if self.on_policy_temperature < 0:
            raise ProfileError(f"align.on_policy_temperature: {self.on_policy_temperature} < 0")


def _eagle3_stage() -> StageConfig:
    return StageConfig(name="eagle3", steps=300, batch_size=8, lr=1e-3, eval_every=0, loss="fkl")


@dataclass(frozen=True)
class Eagle3Config:
    """An EAGLE-3 head (draft.kind eagle3): one decoder layer over three of the target's layers,
    trained on the KD answers with the target computing features and teacher logits in the loop.
    """

    # the training stage; loss "fkl"/"tvd": the target's distribution over the head's vocabulary
    # (computed in the loop, no top-k file), "ce": the KD answer tokens
    stage: StageConfig = field(default_factory=_eagle3_stage)
    # the three target layers whose outputs the head reads; null: openvino_genai's own choice
    # (2, N/2, N-3) for targets of 10+ layers, else the first, middle and last
    layers: tuple[int, ...] | None = None
    draft_vocab: int = 8192  # rows of the head's LM head: the target's most used answer tokens
    # training-time test: draft steps unrolled per position (step j reads step j-1's state)
    ttt_steps: int = 3
    ttt_decay: float = 0.8  # weight of step j's loss: ttt_decay ** j (normalised)
    max_len: int = 512  # longest KD row (prompt + answer, tokens) trained on
    val_fraction: float = 0.05  # KD prompts held out for validation and the offline estimate
    drop_truncated: bool = False  # as align.drop_truncated
    seed: int = 0  # head init and data order
    # The check eagle3_head_accepts passes when the offline tau at k=1 (1 + the first draft's
    # acceptance) exceeds this. Not part of the artifact version: it re-judges, not retrains.
    gate_min_tau: float = 1.0

    def __post_init__(self) -> None:
        if self.ttt_steps < 1 or not 0 < self.ttt_decay <= 1:
            raise ProfileError(
                f"eagle3: ttt_steps {self.ttt_steps} must be >= 1 and ttt_decay "
                f"{self.ttt_decay} in (0, 1]"
            )
        if self.draft_vocab < 2:
            raise ProfileError(f"eagle3.draft_vocab: {self.draft_vocab}, expected >= 2")
        if self.layers is not None and len(self.layers) != 3:
            raise ProfileError(f"eagle3.layers: {list(self.layers)}, expected three layer ids")
        if not 0 < self.val_fraction < 0.5:
            raise ProfileError(f"eagle3.val_fraction: {self.val_fraction}, expected in (0, 0.5)")

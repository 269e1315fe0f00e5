"""Profiles: every knob of the pipeline in one frozen, validated object per setting.

`tiny` runs the whole graph in minutes for tests (a random tiny target: plumbing only),
`default` is the embedded offline default (SmolLM2-135M-Instruct, offline corpora, about an hour
on 2 cores), `paper` is the paper's setting: it cannot run here, but it must load and validate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fastdraft_dag.dedup import DedupConfig
from fastdraft_dag.draft_config import PRESETS, DraftSize
from fastdraft_dag.filters import FilterConfig
from fastdraft_dag.sources import SourceSpec

OFFLINE_SOURCES = tuple(
    SourceSpec(name) for name in ("python_stdlib", "wikipedia", "shakespeare", "kjv_bible")
)


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class CorporaConfig:
    """What goes into the corpus and how it is filtered; `sources` accepts names or mappings."""

    sources: tuple[SourceSpec, ...] = OFFLINE_SOURCES
    max_docs_per_source: int | None = None  # per unit (a file, or a chunk of files_per_unit)
    files_per_unit: int = 400
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)

    def __post_init__(self) -> None:
        specs = tuple(SourceSpec.parse(s) for s in self.sources)
        if self.max_docs_per_source is not None:
            specs = tuple(replace(s, max_docs=self.max_docs_per_source) for s in specs)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ProfileError(f"corpora: source names must be unique, got {names}")
        object.__setattr__(self, "sources", specs)


@dataclass(frozen=True)
class ShardsConfig:
    seq_len: int = 512
    seqs_per_shard: int = 2048
    val_fraction: float = 0.02
    max_tokens: dict[str, int] | None = None  # per domain; None = everything
    # Alternatively a total train-token budget split by `mix` ({"text": 0.4, "code": 0.6}).
    max_train_tokens: int | None = None
    mix: dict[str, float] | None = None

    def budgets(self) -> dict[str, int] | None:
        """Train tokens per domain: `mix` x `max_train_tokens` when set, else `max_tokens`."""
        if self.mix is None or self.max_train_tokens is None:
            return self.max_tokens
        return {d: int(f * self.max_train_tokens) for d, f in self.mix.items()}


@dataclass(frozen=True)
class StageConfig:
    name: str
    steps: int
    batch_size: int
    lr: float
    mix: dict[str, float] = field(default_factory=lambda: {"text": 1.0})
    min_lr: float | None = None
    warmup_steps: int = 20
    grad_accum: int = 1
    weight_decay: float = 0.1
    eval_every: int = 100
    eval_batches: int = 8

    def to_spec(self, data: dict[str, Any]) -> dict[str, Any]:
        """This stage as the trainer's JSON spec (see fastdraft_dag.training.loop)."""
        return {
            "name": self.name,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "lr": self.lr,
            "min_lr": self.min_lr if self.min_lr is not None else self.lr / 10,
            "warmup_steps": self.warmup_steps,
            "weight_decay": self.weight_decay,
            "grad_clip": 1.0,
            "eval_every": self.eval_every,
            "eval_batches": self.eval_batches,
            "data": data,
        }


@dataclass(frozen=True)
class PretrainConfig:
    draft: DraftSize
    stages: tuple[StageConfig, ...]
    dtype: str = "bf16"  # the trainer falls back to fp32 where bf16 is not native
    seed: int = 0
    # "target": start the tied embedding from the target's (SVD). Lower loss at step 0; no gain
    # after 40 steps on the default shards (docs/architecture.md). "random": the usual init.
    init_embeddings: str = "target"


@dataclass(frozen=True)
class KDConfig:
    n_instruction: int = 400
    n_code: int = 200
    max_new_tokens: int = 128
    batch_size: int = 8
    temperature: float = 0.0
    dtype: str = "auto"  # bf16 only where the CPU has native bf16; emulated it is ~2x slower
    seed: int = 0


@dataclass(frozen=True)
class AlignConfig:
    stage: StageConfig
    max_len: int = 512
    val_fraction: float = 0.05
    # An answer cut at max_new_tokens is still the target's distribution (it only lacks the
    # end-of-turn label, which kd.encode_row leaves off): keep it unless asked otherwise.
    drop_truncated: bool = False


@dataclass(frozen=True)
class ExportConfig:
    draft_formats: tuple[str, ...] = ("fp16", "int8")
    target_format: str = "int8"


@dataclass(frozen=True)
class BenchConfig:
    prompts_per_family: int = 10
    offline_max_new_tokens: int = 64
    ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    sd_prompts_per_family: int = 4
    sd_max_new_tokens: int = 64
    sd_k: int = 3
    sd_draft_format: str = "int8"


@dataclass(frozen=True)
class Profile:
    name: str
    target: str
    target_revision: str
    corpora: CorporaConfig
    shards: ShardsConfig
    pretrain: PretrainConfig
    kd: KDConfig
    align: AlignConfig
    export: ExportConfig
    bench: BenchConfig
    threads: int = 2

    def section(self, name: str) -> dict[str, Any]:
        """One section as plain data: what goes into a manifest and an artifact version."""
        return asdict(getattr(self, name))

    def validate(self) -> Profile:
        for stage in (*self.pretrain.stages, self.align.stage):
            if stage.steps <= 0 or stage.batch_size <= 0 or stage.lr <= 0:
                raise ProfileError(
                    f"profile {self.name!r}: stage {stage.name!r} needs positive steps, batch_size, lr"
                )
            unknown = set(stage.mix) - {"text", "code"}
            if unknown:
                raise ProfileError(
                    f"profile {self.name!r}: stage {stage.name!r} mixes unknown domains {sorted(unknown)}"
                )
        mix = self.shards.mix
        if mix is not None and (set(mix) - {"text", "code"} or abs(sum(mix.values()) - 1) > 1e-6):
            raise ProfileError(
                f"profile {self.name!r}: shards.mix {mix} must give text/code fractions summing to 1"
            )
        if (mix is None) != (self.shards.max_train_tokens is None):
            raise ProfileError(
                f"profile {self.name!r}: shards.mix and shards.max_train_tokens go together"
            )
        if not 0 < self.shards.val_fraction < 0.5:
            raise ProfileError(f"profile {self.name!r}: shards.val_fraction must be in (0, 0.5)")
        if self.bench.sd_draft_format not in self.export.draft_formats:
            raise ProfileError(
                f"profile {self.name!r}: bench.sd_draft_format {self.bench.sd_draft_format!r} is not exported"
            )
        if (
            self.pretrain.draft.max_position_embeddings
            and self.shards.seq_len > self.pretrain.draft.max_position_embeddings
        ):
            raise ProfileError(
                f"profile {self.name!r}: shards.seq_len exceeds the draft's max positions"
            )
        return self


EMBEDDED = "embedded:smollm2-135m-instruct"

TINY = Profile(
    name="tiny",
    target="embedded:tiny-random",
    target_revision="main",
    corpora=CorporaConfig(max_docs_per_source=40, files_per_unit=1_000_000),
    shards=ShardsConfig(seq_len=64, seqs_per_shard=256, val_fraction=0.1),
    pretrain=PretrainConfig(
        draft=DraftSize(
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=128,
            max_position_embeddings=512,
        ),
        stages=(
            StageConfig(
                "pretrain",
                steps=12,
                batch_size=4,
                lr=3e-3,
                warmup_steps=2,
                eval_every=6,
                eval_batches=2,
            ),
            StageConfig(
                "continued",
                steps=8,
                batch_size=4,
                lr=2e-3,
                mix={"code": 0.5, "text": 0.5},
                warmup_steps=2,
                eval_every=4,
                eval_batches=2,
            ),
        ),
        dtype="fp32",
    ),
    # The random tiny target answers greedy prompts with whitespace only: sample instead.
    kd=KDConfig(
        n_instruction=4, n_code=4, max_new_tokens=16, batch_size=4, temperature=1.0, dtype="fp32"
    ),
    align=AlignConfig(
        StageConfig(
            "align", steps=6, batch_size=2, lr=1e-3, warmup_steps=1, eval_every=3, eval_batches=1
        ),
        max_len=256,
        val_fraction=0.25,
    ),
    export=ExportConfig(draft_formats=("fp16", "int8"), target_format="fp16"),
    bench=BenchConfig(
        prompts_per_family=2,
        offline_max_new_tokens=8,
        ks=(1, 2, 3, 4, 5, 6, 7, 8),
        sd_prompts_per_family=1,
        sd_max_new_tokens=12,
        sd_k=3,
        sd_draft_format="fp16",
    ),
)

DEFAULT = Profile(
    name="default",
    target=EMBEDDED,
    target_revision="main",
    corpora=CorporaConfig(),
    shards=ShardsConfig(seq_len=512, seqs_per_shard=2048, val_fraction=0.02),
    pretrain=PretrainConfig(
        # d128 x 4: on a 2-core CPU the 49k-vocabulary LM head is most of a training step, so a
        # narrow draft buys tokens; its SD cost is ~0.06-0.08 of a target step.
        draft=DraftSize(
            hidden_size=128,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=384,
            max_position_embeddings=2048,
        ),
        stages=(
            StageConfig(
                "pretrain", steps=150, batch_size=8, lr=3e-3, warmup_steps=15, eval_every=0
            ),
            StageConfig(
                "continued",
                steps=50,
                batch_size=8,
                lr=1.5e-3,
                mix={"code": 0.6, "text": 0.4},
                warmup_steps=5,
                eval_every=0,
            ),
        ),
    ),
    kd=KDConfig(n_instruction=200, n_code=100, max_new_tokens=128, batch_size=8),
    align=AlignConfig(
        StageConfig(
            "align",
            steps=80,
            batch_size=8,
            lr=1.5e-3,
            warmup_steps=8,
            eval_every=0,
            eval_batches=4,
        ),
        max_len=512,
    ),
    export=ExportConfig(draft_formats=("fp16", "int8"), target_format="int8"),
    bench=BenchConfig(),
)

PAPER = Profile(
    name="paper",
    target="microsoft/Phi-3-mini-4k-instruct",
    target_revision="main",
    corpora=CorporaConfig(
        sources=(
            SourceSpec(
                name="fineweb",
                kind="hf",
                domain="text",
                dataset="HuggingFaceFW/fineweb",
                subset="sample-10BT",
                id_column="id",
            ),
            # The hub dataset lists files by blob id; its card shows how to fetch `content` from
            # Software Heritage. Point a `parquet` source at the fetched files, or use this spec
            # with a mirror that carries the column.
            SourceSpec(
                name="the_stack_v2",
                kind="hf",
                domain="code",
                dataset="bigcode/the-stack-v2-dedup",
                subset="Python",
                text_column="content",
                id_column="blob_id",
            ),
        )
    ),
    shards=ShardsConfig(seq_len=2048, seqs_per_shard=8192, val_fraction=0.001),
    pretrain=PretrainConfig(
        # The paper's ~50M draft for Phi-3-mini's 32k vocabulary (d768 x 4, tied; draft_sizes.py).
        draft=replace(PRESETS["fastdraft-50m"], max_position_embeddings=4096),
        stages=(
            StageConfig(
                "pretrain", steps=76_000, batch_size=64, lr=1e-3, warmup_steps=2000, eval_every=2000
            ),
            StageConfig(
                "continued",
                steps=57_000,
                batch_size=64,
                lr=5e-4,
                mix={"code": 0.67, "text": 0.33},
                warmup_steps=500,
                eval_every=2000,
            ),
        ),
    ),
    kd=KDConfig(n_instruction=200_000, n_code=100_000, max_new_tokens=512, batch_size=64),
    align=AlignConfig(
        StageConfig(
            "align", steps=20_000, batch_size=64, lr=3e-4, warmup_steps=500, eval_every=1000
        ),
        max_len=2048,
    ),
    export=ExportConfig(draft_formats=("fp16", "int8"), target_format="int4"),
    bench=BenchConfig(
        prompts_per_family=100, sd_prompts_per_family=50, sd_max_new_tokens=256, sd_k=5
    ),
    threads=0,
)

PROFILES = {p.name: p for p in (TINY, DEFAULT, PAPER)}


def load_profile(name: str, target: str | None = None) -> Profile:
    """A named profile, optionally pointed at another target; validated before anything runs."""
    if name not in PROFILES:
        raise ProfileError(f"profile {name!r}: unknown (known: {', '.join(PROFILES)})")
    profile = PROFILES[name]
    if target:
        profile = replace(profile, target=target)
    return profile.validate()

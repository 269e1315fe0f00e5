"""The recipe: one frozen, validated object per stage, assembled into a Profile."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from fastdraft_dag.core.errors import ConfigError as ProfileError
from fastdraft_dag.data.config import CorporaConfig, ShardsConfig
from fastdraft_dag.distill.config import AlignConfig, Eagle3Config, KDConfig
from fastdraft_dag.evaluation.config import BenchConfig
from fastdraft_dag.openvino.config import ExportConfig
from fastdraft_dag.training.config import PretrainConfig, StageConfig

__all__ = [
    "ASSET_SETTINGS",
    "AlignConfig",
    "BenchConfig",
    "CorporaConfig",
    "DRAFT_KINDS",
    "Eagle3Config",
    "ExportConfig",
    "KDConfig",
    "PretrainConfig",
    "Profile",
    "ProfileError",
    "Settings",
    "ShardsConfig",
    "StageConfig",
]

# What each asset reads of the recipe (dotted paths; a section name means all of it). An
# asset's artifact version hashes exactly these, and `Profile.settings(asset)` refuses to hand
# the asset anything else, so a setting can never change a build without changing its version.
# Judging settings (align.gate_min_gain) are left out on purpose: they re-judge, not rebuild.
ASSET_SETTINGS: dict[str, tuple[str, ...]] = {
    "filtered_corpora": ("corpora", "threads"),
    "tokenized_shards": ("shards",),
    "pretrained_draft": ("pretrain", "threads"),
    "synthetic_kd_dataset": ("kd", "bench.prompt_files", "threads"),
    "aligned_draft": (
        "align.stage",
        "align.max_len",
        "align.val_fraction",
        "align.drop_truncated",
        "align.pretrain_mix",
        "align.on_policy",
        "align.on_policy_fraction",
        "align.on_policy_temperature",
        "align.teacher_topk",
        "kd.max_new_tokens",
        "kd.batch_size",
        "pretrain.seed",
        "pretrain.dtype",
        "pretrain.freeze",
        "threads",
    ),
    "eagle3_head": ("eagle3", "threads"),
    "openvino_ir": ("export", "bench.reference_draft", "bench.sd_draft_format", "draft_kinds"),
    "benchmark_tables": (
        "bench",
        "export.draft_formats",
        "export.target_format",
        "threads",
        "draft_kinds",
    ),
}
JUDGING = {"align.gate_min_gain", "eagle3.gate_min_tau"}
# Draft kinds: "standalone" (pretrained_draft -> aligned_draft, a small LM of its own) and
# "eagle3" (eagle3_head, reading the target's hidden states).
DRAFT_KINDS = ("standalone", "eagle3")


class Settings:
    """A read-only view of the settings one asset declared; anything else is an error."""

    def __init__(self, value: Any, asset: str, allowed: tuple[str, ...], path: str = "") -> None:
        self._value, self._asset, self._allowed, self._path = value, asset, allowed, path

    def __getattr__(self, name: str) -> Any:
        full = f"{self._path}.{name}" if self._path else name
        value = getattr(self._value, name)
        if full in self._allowed or full in JUDGING:
            return value
        if any(a.startswith(full + ".") for a in self._allowed):
            return Settings(value, self._asset, self._allowed, full)
        raise AttributeError(
            f"{self._asset} reads setting {full!r} but does not declare it in "
            "config.schema.ASSET_SETTINGS: its artifact version would not change with it"
        )


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) else value


@dataclass(frozen=True)
class Profile:
    name: str  # the recipe's name (its preset's unless set); shown in errors and reports
    target: str  # target model: embedded:<name>, a hub id or a local HF directory
    target_revision: str  # hub branch, tag or commit of the target
    corpora: CorporaConfig
    shards: ShardsConfig
    pretrain: PretrainConfig
    kd: KDConfig
    align: AlignConfig
    export: ExportConfig
    bench: BenchConfig
    threads: int = 2  # CPU threads for data, training and benchmarks; 0 = every core
    # which drafts the graph builds, exports and benchmarks (the release picks among them and
    # plain / prompt lookup): "standalone" and/or "eagle3"
    draft_kinds: tuple[str, ...] = ("standalone",)
    eagle3: Eagle3Config = field(default_factory=Eagle3Config)  # the eagle3 kind's head

    def settings(self, asset: str) -> Settings:
        """What `asset` may read of this recipe (see ASSET_SETTINGS)."""
        return Settings(self, asset, ASSET_SETTINGS[asset])

    def version_config(self, asset: str) -> dict[str, Any]:
        """Every setting `asset` reads, as plain data: what its artifact version hashes."""
        out: dict[str, Any] = {}
        for path in ASSET_SETTINGS[asset]:
            value: Any = self
            for part in path.split("."):
                value = getattr(value, part)
            plain = _plain(value)
            if isinstance(plain, dict):  # a whole section: its judging settings stay out
                plain = {k: v for k, v in plain.items() if f"{path}.{k}" not in JUDGING}
            out[path] = plain
        return out

    def section(self, name: str) -> dict[str, Any]:
        """One section as plain data: what goes into a manifest and an artifact version."""
        return asdict(getattr(self, name))

    def validate(self) -> Profile:
        kinds = self.draft_kinds
        if not kinds or set(kinds) - set(DRAFT_KINDS) or len(set(kinds)) != len(kinds):
            raise ProfileError(
                f"profile {self.name!r}: draft_kinds {list(kinds)}, expected one or both of "
                f"{list(DRAFT_KINDS)}"
            )
        if self.threads < 0:
            raise ProfileError(f"threads: {self.threads}, expected >= 0 (0 = every core)")
        for stage in (*self.pretrain.stages, self.align.stage, self.eagle3.stage):
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
        if not self.bench.sd_ks or min(self.bench.sd_ks) < 1:
            raise ProfileError(
                f"profile {self.name!r}: bench.sd_ks {self.bench.sd_ks} must be non-empty, each >= 1"
            )
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

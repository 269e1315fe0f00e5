"""Settings of the data stage: which corpora, how they are filtered, how they are packed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fastdraft_dag.core.errors import ConfigError as ProfileError
from fastdraft_dag.data.dedup import DedupConfig
from fastdraft_dag.data.filters import FilterConfig
from fastdraft_dag.sources.specs import SourceSpec

OFFLINE_SOURCES = tuple(
    SourceSpec(name) for name in ("python_stdlib", "wikipedia", "shakespeare", "kjv_bible")
)


@dataclass(frozen=True)
class CorporaConfig:
    """What goes into the corpus and how it is filtered; `sources` accepts names or mappings."""

    # corpus sources: builtin names or mappings (see the items table)
    sources: tuple[SourceSpec, ...] = OFFLINE_SOURCES
    # At most this many documents per unit (a file, or a chunk of files_per_unit); null = all.
    max_docs_per_source: int | None = None
    # files of a folder source per unit (a unit is filtered in one process)
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
    seq_len: int = 512  # tokens per packed training sequence
    seqs_per_shard: int = 2048  # sequences per shard file
    val_fraction: float = 0.02  # fraction of sequences held out for validation, in (0, 0.5)
    max_tokens: dict[str, int] | None = None  # per domain; None = everything
    # Alternatively a total train-token budget split by `mix` ({"text": 0.4, "code": 0.6}).
    max_train_tokens: int | None = None
    # domain fractions of max_train_tokens, summing to 1 (set both or neither)
    mix: dict[str, float] | None = None

    def budgets(self) -> dict[str, int] | None:
        """Train tokens per domain: `mix` x `max_train_tokens` when set, else `max_tokens`."""
        if self.mix is None or self.max_train_tokens is None:
            return self.max_tokens
        return {d: int(f * self.max_train_tokens) for d, f in self.mix.items()}

"""The pipeline resource: which recipe, which target, where artifacts and tables live.

Its fields show in the Launchpad, so a run can point `config_file` at a recipe YAML (or pick
another `profile_name`) without redeploying; the recipe is validated when the run's resources
start, before any asset does work.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from fastdraft_dag.config.presets import Profile, load_profile, recipe_data
from fastdraft_dag.sources.specs import load_sources_file
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.targets.registry import TargetRegistry, TargetSpec
from fastdraft_dag.targets.resolve import ResolvedTarget, resolve_target


class FastDraftPipeline(dg.ConfigurableResource):
    """Recipe (a preset, or a recipe file on one), artifact root and an optional target override.

    The recipe's target (or the override) is the default target; every other target is a
    partition key in the registry under the artifact root (`targets.json`).
    """

    profile_name: str = Field(
        default="default",
        description="preset: tiny | default | paper | qwen (a recipe file's `base` takes precedence)",
    )
    config_file: str = Field(
        default="",
        description="recipe YAML overriding settings of the preset (docs/settings.md); '' = none",
    )
    artifact_root: str = Field(default="artifacts", description="where artifacts and DuckDB live")
    target: str = Field(
        default="", description="hub id or local directory replacing the recipe's target"
    )
    target_revision: str = Field(default="", description="the target's revision; '' = recipe's")
    sources_file: str = Field(
        default="", description="YAML/JSON list of corpus sources replacing the recipe's"
    )
    # The largest drop in alpha_greedy per task, against the same target's previous benchmark,
    # that the acceptance check lets pass (absolute; benchmark noise on a few prompts is ~0.01).
    acceptance_tolerance: float = Field(
        default=0.02, description="largest alpha_greedy drop per task the acceptance check allows"
    )

    @cached_property
    def profile(self) -> Profile:
        profile = load_profile(self.profile_name, self.target or None, self.config_file or None)
        if self.sources_file:
            sources = load_sources_file(self.sources_file)
            profile = replace(profile, corpora=replace(profile.corpora, sources=sources))
        return profile

    @cached_property
    def recipe(self) -> dict[str, Any]:
        """The whole effective recipe as plain data: what each artifact's manifest keeps."""
        return recipe_data(self.profile)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Validate the recipe when a run starts, so a bad Launchpad value fails before any work."""
        _ = self.profile

    @property
    def root(self) -> Path:
        return Path(self.artifact_root).resolve()

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)

    @property
    def db_path(self) -> Path:
        return self.root / "fastdraft.duckdb"

    @property
    def registry(self) -> TargetRegistry:
        return TargetRegistry(self.root)

    @property
    def default_target(self) -> TargetSpec:
        """The profile's target (or the override): registered automatically on a fresh instance."""
        return TargetSpec.parse(
            self.profile.target,
            self.target_revision or self.profile.target_revision,
        )

    def target_spec(self, partition_key: str | None = None) -> TargetSpec:
        """What a partition key means: the registry's entry, else the default target's own key."""
        default = self.default_target
        if not partition_key:
            return default
        registered = self.registry.specs().get(partition_key)
        if registered is not None:
            return registered
        return default if partition_key == default.key else self.registry.get(partition_key)

    def resolve_target(self, partition_key: str | None = None) -> ResolvedTarget:
        """The target of this partition (the default target without one), as a local directory.

        Its `key` is the partition key, so artifacts land in `<asset>/<partition key>/`.
        """
        spec = self.target_spec(partition_key)
        target = resolve_target(
            spec.name,
            self.root / "targets",
            revision=spec.revision,
        )
        return replace(target, key=partition_key or spec.key)

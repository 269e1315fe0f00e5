"""The pipeline resource: which profile, which target, where artifacts and tables live."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from pathlib import Path

import dagster as dg

from fastdraft_dag.profiles import Profile, load_profile
from fastdraft_dag.sources import load_sources_file
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.target import ResolvedTarget, resolve_target


class FastDraftPipeline(dg.ConfigurableResource):
    """Profile name, artifact root and an optional target override (hub id or local directory)."""

    profile_name: str = "default"
    artifact_root: str = "artifacts"
    target: str = ""
    target_revision: str = ""
    trust_remote_code: bool = False
    sources_file: str = ""  # YAML/JSON list of corpus sources replacing the profile's

    @cached_property
    def profile(self) -> Profile:
        profile = load_profile(self.profile_name, self.target or None)
        if self.sources_file:
            sources = load_sources_file(self.sources_file)
            profile = replace(profile, corpora=replace(profile.corpora, sources=sources))
        return profile

    @property
    def root(self) -> Path:
        return Path(self.artifact_root).resolve()

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)

    @property
    def db_path(self) -> Path:
        return self.root / "fastdraft.duckdb"

    def resolve_target(self) -> ResolvedTarget:
        return resolve_target(
            self.profile.target,
            self.root / "targets",
            revision=self.target_revision or self.profile.target_revision,
            trust_remote_code=self.trust_remote_code,
        )

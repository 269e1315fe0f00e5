"""Assembles the code location: assets, checks and resources for the profile in the environment.

FASTDRAFT_PROFILE (tiny | default | paper), FASTDRAFT_HOME (artifact root) and FASTDRAFT_TARGET
(a hub id or local directory overriding the profile's target) choose what `dagster dev` serves;
FASTDRAFT_SOURCES names a YAML/JSON file of corpus sources replacing the profile's.
"""

from __future__ import annotations

import os

import dagster as dg

from fastdraft_dag.assets import alignment, data, evaluation, export, target, training
from fastdraft_dag.resources.core_ultra import CoreUltraResource
from fastdraft_dag.resources.hpu_training import HPUTrainingResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline

ASSET_MODULES = (target, data, training, alignment, export, evaluation)

# Records the target's revision; a changed revision is what makes its draft chain stale.
observe_targets = dg.define_asset_job(
    "observe_targets", selection=dg.AssetSelection.keys("target_model")
)


def build_defs(
    profile: str = "default",
    artifact_root: str = "artifacts",
    target_override: str = "",
    sources_file: str = "",
) -> dg.Definitions:
    pipeline = FastDraftPipeline(
        profile_name=profile,
        artifact_root=artifact_root,
        target=target_override,
        sources_file=sources_file,
    )
    threads = pipeline.profile.threads or os.cpu_count() or 1
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        jobs=[observe_targets],
        resources={
            "pipeline": pipeline,
            "hpu": HPUTrainingResource(backend="auto", threads=threads),
            "core_ultra": CoreUltraResource(device="CPU", precision_hint="f32"),
        },
    )


defs = build_defs(
    os.environ.get("FASTDRAFT_PROFILE", "default"),
    os.environ.get("FASTDRAFT_HOME", "artifacts"),
    os.environ.get("FASTDRAFT_TARGET", ""),
    os.environ.get("FASTDRAFT_SOURCES", ""),
)

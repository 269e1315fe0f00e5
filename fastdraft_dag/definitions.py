"""Assembles the code location: assets, checks, resources, jobs, schedules and sensors.

FASTDRAFT_PROFILE (tiny | default | paper | qwen), FASTDRAFT_HOME (artifact root) and FASTDRAFT_TARGET
(a hub id or local directory overriding the profile's target) choose what `dagster dev` serves;
FASTDRAFT_CONFIG names a recipe YAML overriding settings of the profile (validated here, so a
bad recipe stops the code location from loading with an error naming the setting);
FASTDRAFT_SOURCES names a YAML/JSON file of corpus sources replacing the profile's.
FASTDRAFT_RETRAIN_CRON (default nightly 02:00), FASTDRAFT_OBSERVE_CRON (hourly at :30) and
FASTDRAFT_CRON_TZ (UTC) set the retraining window and the target observation schedule; an
invalid value stops the code location from loading with an error naming it.
FASTDRAFT_ACCEPTANCE_TOLERANCE (0.02) is the alpha_greedy drop the acceptance check allows.
"""

from __future__ import annotations

import os

import dagster as dg

from fastdraft_dag.assets import (
    alignment,
    data,
    eagle3,
    evaluation,
    export,
    registration,
    schedules,
    target,
    training,
)
from fastdraft_dag.assets.automation import retrain_in_window, with_automation
from fastdraft_dag.core.settings import Settings
from fastdraft_dag.resources.core_ultra import CoreUltraResource
from fastdraft_dag.resources.hpu_training import HPUTrainingResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.storage.artifacts import verify_level

ASSET_MODULES = (target, data, training, alignment, eagle3, export, evaluation)


def build_defs(
    profile: str = "default",
    artifact_root: str = "artifacts",
    target_override: str = "",
    sources_file: str = "",
    *,
    config_file: str = "",
    retrain_cron: str | None = None,
    observe_cron: str | None = None,
    cron_timezone: str | None = None,
    acceptance_tolerance: float | None = None,
) -> dg.Definitions:
    env = Settings.from_env()  # every FASTDRAFT_* variable, its type and range checked here
    retrain_cron = schedules.validate_cron(
        "FASTDRAFT_RETRAIN_CRON", retrain_cron or env.retrain_cron
    )
    observe_cron = schedules.validate_cron(
        "FASTDRAFT_OBSERVE_CRON", observe_cron or env.observe_cron
    )
    tz = schedules.validate_timezone("FASTDRAFT_CRON_TZ", cron_timezone or env.cron_tz)
    verify_level()  # FASTDRAFT_VERIFY, read again by each asset's store
    if acceptance_tolerance is None:
        acceptance_tolerance = env.acceptance_tolerance
    pipeline = FastDraftPipeline(
        profile_name=profile,
        artifact_root=artifact_root,
        target=target_override,
        sources_file=sources_file,
        config_file=config_file,
        acceptance_tolerance=acceptance_tolerance,
    )
    threads = pipeline.profile.threads or os.cpu_count() or 1
    assets = dg.load_assets_from_modules(ASSET_MODULES)
    return dg.Definitions(
        assets=with_automation(assets, retrain_in_window(retrain_cron, tz)),
        jobs=[
            schedules.observe_targets,
            schedules.retrain_target,
            registration.register_targets_job,
        ],
        schedules=[schedules.build_observe_schedule(observe_cron, tz, schedules.observe_targets)],
        sensors=[
            registration.build_target_partitions_sensor(),
            schedules.build_automation_sensor(),
        ],
        resources={
            "pipeline": pipeline,
            "hpu": HPUTrainingResource.from_env(threads),  # FASTDRAFT_HPU_* (README)
            "core_ultra": CoreUltraResource(device="CPU", precision_hint="f32"),
        },
    )


def defs_from_env() -> dg.Definitions:
    """What `dagster dev` serves: the code location as the FASTDRAFT_* variables choose it."""
    env = Settings.from_env()
    return build_defs(env.profile, env.home, env.target, env.sources, config_file=env.config)


defs = defs_from_env()

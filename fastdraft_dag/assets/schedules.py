"""Jobs, schedules and sensors: what starts runs, and the settings that time them.

- `observe_targets` (job) and `observe_targets_schedule`: observe `target_model` once per
  registered target; an unchanged revision records the same data version, which triggers nothing.
- `retrain_target` (job) and the `retrain_window` automation sensor: rematerialize a target's
  chain; both put a `dagster/max_runtime` run tag on their runs, which run monitoring enforces
  (Dagster reads it from run tags only, never from an asset's tags).
- Cron strings and timezones are checked when the code location loads, naming the setting.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

import dagster as dg

from fastdraft_dag.assets.dagster_internals import is_valid_cron_string
from fastdraft_dag.assets.partitions import TARGET_CHAIN, TARGETS
from fastdraft_dag.core.errors import ConfigError

# Longest a retraining run may take before run monitoring fails it (both trainings + the rest).
RETRAIN_MAX_RUNTIME_S = 48 * 3600
RUN_TAGS = {dg.MAX_RUNTIME_SECONDS_TAG: str(RETRAIN_MAX_RUNTIME_S)}


class ScheduleConfigError(ConfigError):
    """An invalid cron string or timezone; the message names the setting and its value."""


def validate_cron(setting: str, value: str) -> str:
    if not isinstance(value, str) or not is_valid_cron_string(value.strip()):
        raise ScheduleConfigError(
            f"{setting}={value!r}: not a valid cron string (five fields, e.g. '0 2 * * *')"
        )
    return value.strip()


def validate_timezone(setting: str, value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ScheduleConfigError(f"{setting}={value!r}: not an IANA timezone ({exc})") from exc
    return value


# Records the target's revision (one partition per target; all targets without a partition key);
# a changed revision is what makes that target's draft chain stale.
observe_targets = dg.define_asset_job(
    "observe_targets", selection=dg.AssetSelection.assets("target_model")
)
# One target's whole chain, with a max runtime that run monitoring enforces (training is long).
retrain_target = dg.define_asset_job(
    "retrain_target",
    selection=dg.AssetSelection.assets(*TARGET_CHAIN),  # partitioned by target (inferred)
    tags=RUN_TAGS,
    description="Rematerialize one target's chain (tokenized_shards -> benchmark_tables); up-to-date steps reuse their artifacts.",
)


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "retrain_window",
        target=dg.AssetSelection.all(),
        run_tags=RUN_TAGS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description="Evaluates retrain_in_window on every asset: requests, in the retraining window, the chains whose target, upstream or code changed.",
    )


def build_observe_schedule(cron: str, timezone: str, job: Any) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="observe_targets_schedule",
        cron_schedule=cron,
        execution_timezone=timezone,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Observes target_model, one run per registered target: a new revision makes that target's chain stale and due in the next retraining window.",
    )
    def observe_targets_schedule(context: dg.ScheduleEvaluationContext):
        keys = context.instance.get_dynamic_partitions(TARGETS.name)
        if not keys:
            return dg.SkipReason("no registered targets yet")
        return [dg.RunRequest(partition_key=k, tags={"fastdraft/target": k}) for k in keys]

    return observe_targets_schedule

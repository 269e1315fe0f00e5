"""Operating the graph: targets as partitions, when assets rematerialize, what is stale.

- **Targets.** One dynamic partition per registered target (`targets`). `register_targets`
  validates every target first, then writes the registry and the partitions; the
  `register_targets` job does it from run config (the launchpad), the CLI from a shell, and the
  `target_partitions` sensor keeps the profile's default target, the registry and the partitions
  in step (and turns a hub id or directory typed into the UI's "Add partition" into its key).
- **Retraining window.** Every materializable asset carries `retrain_in_window(cron)`: on the
  first automation tick after the cron tick, a partition is requested if, since it was last
  requested or updated, a dependency changed (target_model's revision; an upstream
  materialization from another run), its own code version changed, or the partition appeared.
  A chain is requested together (`will_be_requested` carries the change down in the same tick).
  Between windows nothing starts: a code-version bump of a training asset makes it stale at once
  in the UI, but training waits for the window or for someone to materialize it.
- **Observation.** `observe_targets_schedule` observes `target_model` once per registered target;
  an unchanged revision records the same data version, which triggers nothing.
"""

# No `from __future__ import annotations`: Dagster reads the op's config class from its annotation.
import datetime
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dagster as dg

from fastdraft_dag.assets.dagster_internals import (
    AssetGraphView,
    CachingStaleStatusResolver,
    StaleStatus,
    TemporalContext,
    is_valid_cron_string,
)
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.core.errors import ConfigError
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.targets.registry import TargetRegistry, TargetRegistryError, TargetSpec
from fastdraft_dag.targets.resolve import TargetError, check_target

DEFAULT_RETRAIN_CRON = "0 2 * * *"  # nightly at 02:00: expensive work waits for this window
DEFAULT_OBSERVE_CRON = "30 * * * *"  # hourly: a new target revision shows up within the hour
DEFAULT_TIMEZONE = "UTC"
# Longest a retraining run may take before run monitoring fails it (both trainings + the rest).
RETRAIN_MAX_RUNTIME_S = 48 * 3600

# The per-target chain, in order; filtered_corpora is shared and rematerializes on its own.
TARGET_CHAIN = (
    "tokenized_shards",
    "synthetic_kd_dataset",
    "pretrained_draft",
    "aligned_draft",
    "eagle3_head",
    "openvino_ir",
    "benchmark_tables",
)


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


# -- targets -------------------------------------------------------------------------------


def register_targets(
    instance: dg.DagsterInstance,
    registry: TargetRegistry,
    specs: Sequence[TargetSpec],
    verify: Callable[[str, str], Any] = check_target,
) -> list[str]:
    """Register targets: all are checked first, and on any error nothing is written.

    Refused: a key twice in the request, a key already registered or already a partition, a
    target that does not resolve (TargetError).
    """
    keys = [s.key for s in specs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise TargetRegistryError(f"targets {repeated}: given more than once; nothing was changed")
    registered = registry.specs()
    partitions = set(instance.get_dynamic_partitions(TARGETS.name))
    for spec in specs:
        if spec.key in registered or spec.key in partitions:
            have = registered.get(spec.key)
            where = f"{have.name} @ {have.revision}" if have else "a partition already"
            raise TargetRegistryError(
                f"target {spec.name!r}: key {spec.key!r} is already registered ({where}); "
                "nothing was changed"
            )
    for spec in specs:
        verify(spec.name, spec.revision)
    for spec in specs:
        registry.add(spec, verify=lambda *_: None)  # verified above
    instance.add_dynamic_partitions(TARGETS.name, keys)
    return keys


def ensure_default_target(instance: dg.DagsterInstance, pipeline: FastDraftPipeline) -> str:
    """The profile's target, registered and a partition (idempotent): a fresh instance works."""
    spec = pipeline.default_target
    pipeline.registry.ensure(spec)
    if not instance.has_dynamic_partition(TARGETS.name, spec.key):
        instance.add_dynamic_partitions(TARGETS.name, [spec.key])
    return spec.key


def partition_requests(
    pipeline: FastDraftPipeline,
    existing: Iterable[str],
    skip: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> tuple[list[str], list[str], list[str]]:
    """Keys to add and to delete so the partitions match the registry, and keys that failed.

    A partition key that is no target's key (typed into the UI's "Add partition") is read as a
    target id: a local directory or hub id that resolves is registered under its key, which
    replaces it; one that does not is left alone and reported once (materializing it fails
    with the registry's error).
    """
    existing, skip = set(existing), set(skip)
    registry = pipeline.registry
    try:
        registry.ensure(pipeline.default_target)
    except (TargetError, ValueError) as exc:
        log(f"default target {pipeline.default_target.name!r} not registered: {exc}")
    wanted = set(registry.keys())
    add, delete, failed = set(), [], []
    for key in sorted(existing - wanted):
        try:
            pipeline.target_spec(key)  # an embedded or the default target's key: fine as it is
            continue
        except TargetRegistryError:
            pass
        if key in skip:
            continue
        try:
            spec = registry.add(TargetSpec.parse(key))
        except (TargetError, TargetRegistryError, ValueError) as exc:
            log(f"partition {key!r} is not a resolvable target id: {exc}")
            failed.append(key)
            continue
        log(f"partition {key!r} registered as target {spec.name!r} with key {spec.key!r}")
        add.add(spec.key)
        delete.append(key)
    add |= wanted - existing
    return sorted(add - existing), delete, failed


def build_target_partitions_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name="target_partitions",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Keeps one `targets` partition per registered target: registers the profile's target on a fresh instance, adds targets registered from the CLI, and turns a hub id or directory added in the UI into its target key.",
    )
    def target_partitions(context: dg.SensorEvaluationContext, pipeline: FastDraftPipeline):
        skip = set(filter(None, (context.cursor or "").split("\n")))
        existing = context.instance.get_dynamic_partitions(TARGETS.name)
        add, delete, failed = partition_requests(pipeline, existing, skip, context.log.warning)
        if failed:
            context.update_cursor("\n".join(sorted(skip | set(failed))))
        requests = []
        if add:
            requests.append(TARGETS.build_add_request(add))
        if delete:
            requests.append(TARGETS.build_delete_request(delete))
        if not requests:
            return dg.SkipReason("partitions match the registered targets")
        return dg.SensorResult(dynamic_partitions_requests=requests)

    return target_partitions


class RegisterTargetsConfig(dg.Config):
    """Targets to register: hub ids (`org/model` or `org/model@revision`), local directories or
    embedded names."""

    targets: list[str]
    revision: str = "main"


@dg.op(
    description="Checks every target, then registers them all (registry + partitions); on any error, none."
)
def register_targets_op(
    context: dg.OpExecutionContext, config: RegisterTargetsConfig, pipeline: FastDraftPipeline
) -> None:
    specs = [TargetSpec.parse(t, config.revision) for t in config.targets]
    keys = register_targets(context.instance, pipeline.registry, specs)
    context.log.info(f"registered targets {keys}")


@dg.job(
    name="register_targets",
    description="Register targets from run config (Launchpad: ops.register_targets_op.config.targets).",
)
def register_targets_job() -> None:
    register_targets_op()


# -- automation ----------------------------------------------------------------------------


def retrain_in_window(cron: str, timezone: str = DEFAULT_TIMEZONE) -> dg.AutomationCondition:
    """Request a partition at the window if something it depends on changed since it last ran."""
    ac = dg.AutomationCondition
    changed = (
        ac.newly_missing() | ac.any_deps_updated() | ac.code_version_changed()
    ).since_last_handled()
    return (
        ac.cron_tick_passed(cron, timezone)
        & changed
        & ~ac.any_deps_missing()
        & ~ac.any_deps_in_progress()
        & ~ac.in_progress()
        & ac.all_deps_blocking_checks_passed()
    ).with_label(f"retrain_in_window({cron}, {timezone})")


def with_automation(
    assets: Iterable[Any], condition: dg.AutomationCondition
) -> list[dg.AssetsDefinition | dg.SourceAsset]:
    """The same assets with `condition` on every materializable one (sources stay as they are)."""
    out = []
    for a in assets:
        if isinstance(a, dg.AssetsDefinition) and a.is_executable and not a.is_observable:
            a = a.map_asset_specs(lambda s: s.replace_attributes(automation_condition=condition))
        out.append(a)
    return out


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "retrain_window",
        target=dg.AssetSelection.all(),
        run_tags={dg.MAX_RUNTIME_SECONDS_TAG: str(RETRAIN_MAX_RUNTIME_S)},
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


# -- staleness -----------------------------------------------------------------------------


def stale_asset_keys(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    partition_key: str,
    downstream: bool = True,
) -> list[dg.AssetKey]:
    """Materializable assets that are stale or missing for this target (the UI's "Unsynced"),
    and, with `downstream`, everything below them.

    Partitioned assets are judged at `partition_key`, filtered_corpora as itself. Dagster marks
    an asset stale when its own code version or an input's data version changed; its children
    turn stale only once it has rematerialized. Rebuilding them in the same run is what a
    rematerialization leads to anyway, so `downstream` includes them at once.
    """
    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(
            effective_dt=datetime.datetime.now(datetime.UTC), last_event_id=None
        ),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance, graph, view)
    out: list[dg.AssetKey] = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        pk = partition_key if node.is_partitioned else None
        stale = resolver.get_status(key, pk) in (StaleStatus.STALE, StaleStatus.MISSING)
        if stale or (downstream and any(parent in out for parent in node.parent_keys)):
            out.append(key)
    return out

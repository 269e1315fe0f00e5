"""Targets as partitions, kept in step with the registry.

`register_targets` validates every target first, then writes the registry and the partitions;
the `register_targets` job does it from run config (the launchpad), the CLI from a shell, and the
`target_partitions` sensor keeps the profile's default target, the registry and the partitions in
step (and turns a hub id or directory typed into the UI's "Add partition" into its key).
"""

# No `from __future__ import annotations`: Dagster reads the op's config class and the sensor's
# resource from their annotations.
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dagster as dg

from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.targets.registry import TargetRegistry, TargetRegistryError, TargetSpec
from fastdraft_dag.targets.resolve import TargetError, check_target


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

"""`target_model`: the observable source every draft is made for, one partition per target."""

import dagster as dg

# The tag Dagster reads an observation's data version from (what DataVersionsByPartition writes);
# written by hand here so each partition's observation also carries its metadata.
from fastdraft_dag.assets.dagster_internals import DATA_VERSION_TAG
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.targets.resolve import TargetError, observe_revision


@dg.observable_source_asset(
    group_name="targets",
    partitions_def=TARGETS,
    description=(
        "The target LLM, one partition per registered target: the embedded SmolLM2-135M-Instruct, "
        "a local HF directory or a hub id at a revision. Its data version is the revision (hub "
        "commit, asked of the hub's API without downloading, or SHA-256 of the local files): a "
        "changed target makes its own draft chain stale, and only that one."
    ),
    tags={"dagster/kind/huggingface": ""},
)
def target_model(
    context: dg.OpExecutionContext, pipeline: FastDraftPipeline
) -> dg.DataVersionsByPartition:
    """Observe the run's partition, or every registered target when the run has none."""
    keys = (
        [context.partition_key]
        if context.has_partition_key
        else context.instance.get_dynamic_partitions(TARGETS.name)
    )
    failed = {}
    for key in keys:
        try:
            spec = pipeline.target_spec(key)
            revision = observe_revision(spec.name, pipeline.root / "targets", spec.revision)
        except (TargetError, ValueError) as exc:  # one bad target must not hide the others
            failed[key] = str(exc)
            context.log.error(f"target_model [{key}]: {exc}")
            continue
        context.log_event(
            dg.AssetObservation(
                asset_key="target_model",
                partition=key,
                tags={DATA_VERSION_TAG: revision},
                metadata={
                    "target": spec.name,
                    "requested_revision": spec.revision,
                    "revision": revision,
                },
            )
        )
    if failed:
        raise dg.Failure(
            description=f"target_model: {len(failed)} target(s) could not be observed: "
            + "; ".join(failed.values()),
            metadata={"failed": dg.MetadataValue.json(failed)},
        )
    return dg.DataVersionsByPartition({})

"""`target_model`: the observable source every draft is made for."""

import dagster as dg

from fastdraft_dag.resources.pipeline import FastDraftPipeline


@dg.observable_source_asset(
    group_name="targets",
    description=(
        "The target LLM: the embedded SmolLM2-135M-Instruct, a local HF directory or a hub id at "
        "a revision. Its data version is the revision (hub commit or SHA-256 of the local files): "
        "a changed target makes its draft chain stale."
    ),
    tags={"dagster/kind/huggingface": ""},
)
def target_model(pipeline: FastDraftPipeline) -> dg.ObserveResult:
    target = pipeline.resolve_target()
    return dg.ObserveResult(
        data_version=dg.DataVersion(target.revision),
        metadata={
            "target": target.name,
            "partition": target.key,
            "revision": target.revision,
            "path": dg.MetadataValue.path(str(target.path)),
        },
    )

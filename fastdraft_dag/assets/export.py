"""`openvino_ir`: the aligned draft and the target as OpenVINO IR, ready for openvino_genai.

Reads its inputs, calls `openvino.export.run_export` through the Core Ultra resource (its
`export_ir`, each IR's logits checked on its device) and reports the table.
"""

import dagster as dg

from fastdraft_dag.assets.common import build_artifact, result
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.core.tokenizers import require_same_tokens
from fastdraft_dag.openvino.export import plan_exports, probe_ids, run_export
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.resources.core_ultra import CoreUltraResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.targets.resolve import resolve_target


@dg.asset(
    group_name="export",
    code_version="4",
    deps=["aligned_draft", "eagle3_head", "target_model"],
    partitions_def=TARGETS,
    kinds={"openvino", "pytorch"},
    pool="core_ultra",  # export and IR checks run where the IR is benchmarked
    # Export is deterministic, but optimum-intel/NNCF can fail on a transient resource problem
    # (temp space, memory pressure from a concurrent run): one retry after a pause.
    retry_policy=dg.RetryPolicy(max_retries=1, delay=30),
    description="The drafts of the recipe's draft_kinds (the aligned standalone draft, the EAGLE-3 head with its rt_info), each configured precision: fp16, NNCF int8/int4 weight compression) and the target, exported with optimum-intel through the Core Ultra resource, each IR's logits compared with PyTorch on the resource's device; also the optional reference draft (bench.reference_draft), refused unless its tokenizer is the target's.",
)
def openvino_ir(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, core_ultra: CoreUltraResource
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    settings = pipeline.profile.settings("openvino_ir")
    kinds = settings.draft_kinds
    draft = pipeline.store.latest("aligned_draft", target.key) if "standalone" in kinds else None
    head = pipeline.store.latest("eagle3_head", target.key) if "eagle3" in kinds else None
    export, bench = settings.export, settings.bench
    core_ultra.validate()
    reference = None
    if bench.reference_draft:
        reference = resolve_target(bench.reference_draft, pipeline.root / "targets")
        for warning in require_same_tokens(reference.path, target.path, "bench.reference_draft"):
            context.log.warning(warning)
    jobs = plan_exports(
        draft.path if draft else None,
        target.path,
        export.draft_formats,
        export.target_format,
        reference_dir=reference.path if reference else None,
        reference_format=bench.sd_draft_format if reference else None,
        head_dir=head.path if head else None,
    )

    def build(out):
        probe = probe_ids(target.path)
        exported = run_export(
            jobs, out, probe, core_ultra.export_ir, core_ultra.device, context.log.info
        )
        return {"irs": exported.rows}

    art = build_artifact(
        context,
        pipeline,
        target.key,
        # The IR is device independent, so the device is not hashed: a new device re-checks
        # the IRs when `benchmark_tables` scores them there, without re-exporting.
        config=pipeline.profile.version_config("openvino_ir"),
        inputs={
            **({"aligned_draft": draft.data_version} if draft else {}),
            **({"eagle3_head": head.data_version} if head else {}),
            "target_model": target.revision,
            **({"reference_draft": reference.revision} if reference else {}),
        },
        build=build,
    )
    return result(context, art, {"irs": dg.MetadataValue.md(md_table(art.metrics["irs"]))})

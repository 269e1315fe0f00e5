"""`openvino_ir`: the aligned draft and the target as OpenVINO IR, ready for openvino_genai."""

import dagster as dg
from transformers import AutoTokenizer

from fastdraft_dag.assets.common import build_artifact, result
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.evaluation.offline import check_same_tokenizer
from fastdraft_dag.openvino.export import check_ir_logits, export_ir
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.targets.resolve import resolve_target

IR_PROBE = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'
LOGIT_TOLERANCE = {"fp32": 1e-3, "fp16": 0.5, "int8": 5.0, "int4": 10.0}


@dg.asset(
    group_name="export",
    code_version="2",
    deps=["aligned_draft", "target_model"],
    partitions_def=TARGETS,
    kinds={"openvino", "pytorch"},
    pool="core_ultra",  # export and IR checks run where the IR is benchmarked
    # Export is deterministic, but optimum-intel/NNCF can fail on a transient resource problem
    # (temp space, memory pressure from a concurrent run): one retry after a pause.
    retry_policy=dg.RetryPolicy(max_retries=1, delay=30),
    description="The aligned draft (each configured precision: fp16, NNCF int8/int4 weight compression) and the target, exported with optimum-intel, each IR's logits compared with PyTorch; also the optional reference draft (bench.reference_draft), refused unless its tokenizer is the target's.",
)
def openvino_ir(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    draft = pipeline.store.latest("aligned_draft", target.key)
    cfg = pipeline.profile.export
    bench = pipeline.profile.bench
    reference = None
    if bench.reference_draft:
        reference = resolve_target(bench.reference_draft, pipeline.root / "targets")
        check_same_tokenizer(reference.path, target.path)

    def build(out):
        tok = AutoTokenizer.from_pretrained(target.path)
        probe = tok(IR_PROBE, add_special_tokens=False)["input_ids"]
        jobs = [(f"draft-{f}", draft.path, f) for f in cfg.draft_formats]
        jobs.append((f"target-{cfg.target_format}", target.path, cfg.target_format))
        if reference is not None:
            fmt = bench.sd_draft_format
            jobs.append((f"reference-draft-{fmt}", reference.path, fmt))
        rows = []
        for name, src, fmt in jobs:
            context.log.info(f"exporting {name} from {src}")
            info = export_ir(src, out / name, fmt)
            check = check_ir_logits(src, out / name, probe, LOGIT_TOLERANCE.get(fmt, 10.0))
            rows.append(
                {
                    "ir": name,
                    "weight_format": fmt,
                    "mb": round(info["ir_bytes"] / 1e6, 1),
                    "seconds": round(info["seconds"], 1),
                    **{k: v for k, v in check.items() if not isinstance(v, (list, dict))},
                }
            )
        return {"irs": rows}

    art = build_artifact(
        context,
        pipeline,
        target.key,
        config={
            **pipeline.profile.section("export"),
            "reference_draft": bench.reference_draft,
            "reference_format": bench.sd_draft_format if reference else None,
        },
        inputs={
            "aligned_draft": draft.data_version,
            "target_model": target.revision,
            **({"reference_draft": reference.revision} if reference else {}),
        },
        build=build,
    )
    return result(context, art, {"irs": dg.MetadataValue.md(md_table(art.metrics["irs"]))})

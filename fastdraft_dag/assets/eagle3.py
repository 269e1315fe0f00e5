"""`eagle3_head`: the second draft kind, an EAGLE-3 head trained on the target's answers."""

import dagster as dg
from transformers import AutoTokenizer

from fastdraft_dag.assets.common import (
    TOKENIZER_CHECK,
    build_trained,
    drops_metadata,
    result,
    sft_drops,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.distill.eagle3 import Eagle3Job, train_head
from fastdraft_dag.distill.kd_rows import end_of_turn_ids, read_rows, response_token_ids
from fastdraft_dag.reporting.plots import markdown_image
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.resources.hpu_training import HPUTrainingResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline

ACCEPTS = "eagle3_head_accepts"
ACCEPTS_SPEC = dg.AssetCheckSpec(
    ACCEPTS,
    asset="eagle3_head",
    blocking=True,
    description="Offline estimate on the held-out KD rows (teacher-forced on the target's own features, fp32 PyTorch): tau at k=1 (1 + the first draft's acceptance rate) above eagle3.gate_min_tau (default 1.0: accepted at all). The gate before live EAGLE-3 decoding.",
)


def _estimate_table(offline: dict) -> list[dict]:
    rows = [
        {"task": t, **{k: v for k, v in f.items() if k != "alpha_by_step"}}
        for t, f in (offline.get("by_task") or {}).items()
    ]
    pooled = {k: v for k, v in offline.items() if k not in ("by_task", "alpha_by_step")}
    return [*rows, {"task": "all", **pooled}]


def _accepts(offline: dict, min_tau: float) -> dg.AssetCheckResult:
    tau1 = offline.get("tau_k1")
    return dg.AssetCheckResult(
        check_name=ACCEPTS,
        asset_key="eagle3_head",
        passed=bool(tau1 is not None and tau1 > min_tau),
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"offline tau: k=1 {tau1}, k=3 {offline.get('tau_k3')} over "
            f"{offline.get('chains', 0)} held-out positions; needs k=1 above {min_tau}"
        ),
        metadata={"alpha_by_step": dg.MetadataValue.json(offline.get("alpha_by_step", []))},
    )


def _not_built(context: dg.AssetExecutionContext, kinds: tuple[str, ...]) -> dg.MaterializeResult:
    """A recipe without the eagle3 kind: no head, no artifact (export and benchmark skip it)."""
    why = f"not built: draft_kinds {list(kinds)} has no eagle3 (add it to train the head)"
    context.log.info(why)
    nothing = [  # blocking checks must report; there is nothing to hold back downstream
        dg.AssetCheckResult(check_name=name, passed=True, description=f"{why}: nothing to check")
        for name in (TOKENIZER_CHECK, ACCEPTS)
    ]
    return dg.MaterializeResult(
        metadata={"built": False, "reason": why},
        data_version=dg.DataVersion("not-built"),
        check_results=nothing,
    )


@dg.asset(
    group_name="alignment",
    code_version="1",
    deps=["synthetic_kd_dataset", "target_model"],
    partitions_def=TARGETS,
    kinds={"pytorch", "hpu"},
    pool="hpu",
    check_specs=[tokenizer_check_spec("eagle3_head"), ACCEPTS_SPEC],
    description="An EAGLE-3 draft head (draft kind eagle3): fc over three of the target's layer outputs, one decoder layer reading [embedding, state], the target's most used answer tokens as its LM head (d2t/t2d), the target's embedding frozen. Trained on the KD answers with a training-time-test unroll, the target computing features and teacher logits in the loop, through the HPU training resource; resumable. Saved in optimum-intel's layout (SGLang/vLLM-style), with its offline chained acceptance on held-out rows.",
)
def eagle3_head(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, hpu: HPUTrainingResource
) -> dg.MaterializeResult:
    if "eagle3" not in pipeline.profile.draft_kinds:  # opt-in: ~30 min of 2 cores on default
        return _not_built(context, pipeline.profile.draft_kinds)
    target = pipeline.resolve_target(context.partition_key)
    kd = pipeline.store.latest("synthetic_kd_dataset", target.key)
    settings = pipeline.profile.settings("eagle3_head")
    job = Eagle3Job(eagle3=pipeline.profile.eagle3, threads=settings.threads)
    lineage = {"synthetic_kd_dataset": kd.data_version}

    def build(out):
        tok = AutoTokenizer.from_pretrained(target.path)
        responses = response_token_ids(read_rows(kd.path / "kd.jsonl")[0], tok)
        return train_head(
            target_dir=target.path,
            target_name=target.name,
            kd_dir=kd.path,
            responses=responses,
            always_keep=end_of_turn_ids(target.path, tok),
            lineage=lineage,
            job=job,
            out=out,
            train=lambda spec, work: hpu.train(context, spec, work),
            log=context.log.info,
        )

    art = build_trained(
        context,
        pipeline,
        target.key,
        backend=hpu.backend,
        inputs={**lineage, "target_model": target.revision},
        build=build,
    )
    m = art.metrics
    offline = m.get("offline") or {}
    curve = art.path / "loss_curve.png"
    return result(
        context,
        art,
        {
            "layers": dg.MetadataValue.json(m.get("layers", [])),
            "draft_vocab_coverage": m.get("coverage_held_out"),
            "trainable_parameters": m.get("trainable_parameters"),
            "val_loss": m.get("val_loss"),
            "tokens_per_s": m.get("tokens_per_s"),
            "offline_tau_k3": offline.get("tau_k3"),
            **drops_metadata(sft_drops(m.get("sft_data", {}), {})),
            "offline_estimate": dg.MetadataValue.md(md_table(_estimate_table(offline))),
            "loss_curve": dg.MetadataValue.md(
                markdown_image(curve, "loss curve") if curve.is_file() else "_no training log_"
            ),
        },
        [
            tokenizer_check("eagle3_head", art.path, target.path, target.name),
            _accepts(offline, settings.eagle3.gate_min_tau),
        ],
    )

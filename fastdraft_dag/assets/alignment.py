"""Alignment: the target answers KD prompts (`synthetic_kd_dataset`), the draft learns them (`aligned_draft`)."""

import dagster as dg

from fastdraft_dag.assets.common import (
    build_artifact,
    build_trained,
    drops_metadata,
    fail_fast_on_permanent_errors,
    result,
    sft_drops,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.core.drops import Drops
from fastdraft_dag.distill.align import AlignJob, align_draft
from fastdraft_dag.distill.gate import GateFigures, gate, gate_table
from fastdraft_dag.distill.kd_dataset import (
    PromptSetError,
    build_kd_dataset,
    kd_response_quality,
    sample_rows,
    task_totals,
)
from fastdraft_dag.distill.kd_rows import read_rows
from fastdraft_dag.distill.prompt_sources import (
    files_fingerprint,
)
from fastdraft_dag.reporting.plots import markdown_image
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.resources.hpu_training import HPUTrainingResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.storage.tables import record_rows
from fastdraft_dag.training.spec import StageSummary

KD_EMPTY = "kd_no_empty_responses"
KD_TRUNCATED = "kd_truncated_responses"
KD_CHECKS = [
    dg.AssetCheckSpec(
        KD_EMPTY,
        asset="synthetic_kd_dataset",
        blocking=True,
        description="No response is empty (no text or no tokens): an empty answer teaches nothing and means generation broke.",
    ),
    # Not blocking: truncated answers are kept on purpose, and a blocking check that warns
    # would also hold aligned_draft out of the retraining window (it waits for passed checks).
    dg.AssetCheckSpec(
        KD_TRUNCATED,
        asset="synthetic_kd_dataset",
        description="Answers cut at max_new_tokens, dropped (kd.keep_truncated off) or kept, counted; warns when there are any.",
    ),
]


def kd_quality_checks(quality: dict, drops: Drops) -> list[dg.AssetCheckResult]:
    """Empty responses fail; truncated ones warn: they are still the target's distribution.

    ``drops`` are generation's (a check judges the answers, not the prompts), under ``drops``.
    """
    counts = {
        "rows": quality["rows"],
        "by_task": dg.MetadataValue.json(quality["by_task"]),
    }
    empty = dg.AssetCheckResult(
        check_name=KD_EMPTY,
        asset_key="synthetic_kd_dataset",
        passed=quality["empty"] == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{quality['empty']} of {quality['rows']} responses are empty",
        metadata={
            **counts,
            "empty": quality["empty"],
            **drops_metadata(drops),
        },
    )
    dropped = drops["truncated"]
    truncated = dg.AssetCheckResult(
        check_name=KD_TRUNCATED,
        asset_key="synthetic_kd_dataset",
        passed=quality["truncated"] + dropped == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{dropped} answers stopped at max_new_tokens and were dropped (kd.keep_truncated "
            f"off); {quality['truncated']} of {quality['rows']} kept rows are cut. Many of "
            "either: raise kd.max_new_tokens"
        ),
        metadata={
            **counts,
            "truncated": quality["truncated"],
            **drops_metadata(drops),
            "truncated_fraction": quality["truncated_fraction"],
        },
    )
    return [empty, truncated]


@dg.asset(
    group_name="alignment",
    code_version="3",
    deps=["target_model"],
    partitions_def=TARGETS,
    kinds={"pytorch", "jsonl", "duckdb"},
    pool="hpu",  # the target generates on the accelerator server: one heavy job there at a time
    # Generation is resumable (rows are appended per batch), so a retry after a transient
    # failure (memory pressure, a killed worker) continues where the first attempt stopped.
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30),
    check_specs=KD_CHECKS,
    description="Instruction (ShareGPT first turns) and code (stdlib functions) prompts plus any user prompt sources (JSONL, datasets), deduplicated, cut to the target's context, and disjoint from every evaluation set (an overlapping user prompt fails the asset), answered by the target with its chat template (or a plain fallback), batched and resumable. Rows have stable ids.",
)
def synthetic_kd_dataset(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    settings = pipeline.profile.settings("synthetic_kd_dataset")
    cfg = settings.kd
    eval_files = tuple(settings.bench.prompt_files)
    user_files = [s.path for s in cfg.prompt_sources if s.kind == "jsonl"]

    def build(out):
        try:
            return build_kd_dataset(
                target.path, target.name, cfg, eval_files, settings.threads, out
            )
        except PromptSetError as exc:  # a retry would fail the same way: fail at once
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    inputs = {"target_model": target.revision}
    if user_files or eval_files:  # file contents, not just paths, decide the prompt set
        inputs["prompt_files"] = files_fingerprint([*user_files, *eval_files])
    art = build_artifact(
        context,
        pipeline,
        target.key,
        config=pipeline.profile.version_config("synthetic_kd_dataset"),
        inputs=inputs,
        build=build,
        resumable=True,
    )
    rows = read_rows(art.path / "kd.jsonl")[0]
    totals = [{"target": target.name, **t} for t in task_totals(rows)]
    with fail_fast_on_permanent_errors(context.run_id):
        record_rows(
            pipeline.db_path,
            "kd_datasets",
            art.manifest["version"],
            totals,
            context.run.run_id,
            art.manifest.get("built_at"),
        )
    sample = sample_rows(rows)
    m = art.metrics
    generation = Drops(m.get("drops", {}))
    prompt_drops = Drops(m.get("prompt_stats", {}).get("drops", {}))
    return result(
        context,
        art,
        {
            "rows": len(rows),
            "response_tokens": sum(r["response_tokens"] for r in rows),
            "tokens_per_s": m.get("tokens_per_s"),
            "by_task": dg.MetadataValue.json(m.get("by_task", {})),
            **drops_metadata(Drops.phases({"prompt": prompt_drops, "generation": generation})),
            "template": m.get("template", ""),  # chat, or fallback: no chat template
            "prompt_sources": dg.MetadataValue.md(
                md_table(
                    m.get("prompt_stats", {}).get("sources", []),
                    ["source", "kind", "rows", "dropped", "drops"],
                )
            ),
            "sample": dg.MetadataValue.md(md_table(sample)),
        },
        kd_quality_checks(kd_response_quality(rows), generation),
    )


GATE = "aligned_beats_pretrained"
GATE_SPEC = dg.AssetCheckSpec(
    GATE,
    asset="aligned_draft",
    blocking=True,
    description="Greedy acceptance on the held-out KD rows (draft argmax == target argmax, teacher-forced on prompt + the target's response, fp32 PyTorch) is higher for the aligned draft than for the pretrained draft it started from (by more than align.gate_min_gain).",
)


def _gate_result(m: dict, min_gain: float) -> dg.AssetCheckResult:
    figures: GateFigures = m.get("gate") or {}
    if "aligned" not in figures:
        passed, desc, table = False, "no held-out acceptance figures in this artifact", []
    else:
        passed, desc, table = gate(figures["aligned"], figures["pretrained"], min_gain)
    return dg.AssetCheckResult(
        check_name=GATE,
        asset_key="aligned_draft",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=desc,
        metadata={
            "per_task": dg.MetadataValue.md(md_table(table)),
            "min_gain": min_gain,
            "held_out_rows": (figures.get("aligned") or {}).get("rows", 0),
        },
    )


@dg.asset(
    group_name="alignment",
    code_version="4",
    deps=["pretrained_draft", "synthetic_kd_dataset", "tokenized_shards", "target_model"],
    partitions_def=TARGETS,
    kinds={"pytorch", "hpu"},
    pool="hpu",
    check_specs=[tokenizer_check_spec("aligned_draft"), GATE_SPEC],
    description="The pretrained draft fine-tuned on the target's own responses (sequence-level KD; loss on response tokens only), optionally mixed with on-policy rows (the draft's own samples labelled by the target's argmax) and pre-training sequences. Gated: held-out greedy acceptance must beat the pretrained draft's.",
)
def aligned_draft(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, hpu: HPUTrainingResource
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    settings = pipeline.profile.settings("aligned_draft")
    cfg = settings.align
    pretrained = pipeline.store.latest("pretrained_draft", target.key)
    kd = pipeline.store.latest("synthetic_kd_dataset", target.key)
    shards = pipeline.store.latest("tokenized_shards", target.key) if cfg.pretrain_mix else None
    job = AlignJob(
        align=pipeline.profile.align,
        on_policy_max_new_tokens=settings.kd.max_new_tokens,
        on_policy_batch_size=settings.kd.batch_size,
        seed=settings.pretrain.seed,
        dtype=settings.pretrain.dtype,
        threads=settings.threads,
        freeze=tuple(settings.pretrain.freeze),
    )
    lineage = {"pretrained_draft": pretrained.data_version, "synthetic_kd_dataset": kd.data_version}

    def build(out):
        return align_draft(
            target.path,
            target.name,
            pretrained=pretrained.path,
            kd_dir=kd.path,
            shards=shards.path if shards else None,
            lineage=lineage,
            job=job,
            out=out,
            train=lambda spec, work: hpu.train(context, spec, work),
            log=context.log.info,
        )

    inputs = {**lineage, "target_model": target.revision}
    if shards:
        inputs["tokenized_shards"] = shards.data_version
    art = build_trained(
        context, pipeline, target.key, backend=hpu.backend, inputs=inputs, build=build
    )
    m = art.metrics
    gate_figures: GateFigures = m.get("gate") or {}
    stages: list[StageSummary] = m.get("stages") or []
    curve = art.path / "loss_curve.png"
    return result(
        context,
        art,
        {
            "val_loss": m.get("val_loss"),
            "mfu": m.get("mfu"),
            "tensorboard": dg.MetadataValue.path(str(art.path / "tensorboard")),
            "stages": dg.MetadataValue.json(stages),
            "pretrained_val_loss_on_kd": stages[0].get("initial_val_loss") if stages else None,
            "tokens_per_s": m.get("tokens_per_s"),
            "sft_data": dg.MetadataValue.json(m.get("sft_data", {})),
            "data_parts": dg.MetadataValue.json(m.get("data_parts", [])),
            "on_policy": dg.MetadataValue.json(m.get("on_policy", {})),
            **drops_metadata(sft_drops(m.get("sft_data", {}), m.get("on_policy", {}))),
            "acceptance_pretrained": (gate_figures.get("pretrained") or {}).get("overall"),
            "acceptance_aligned": (gate_figures.get("aligned") or {}).get("overall"),
            "acceptance_by_task": dg.MetadataValue.md(
                md_table(gate_table(gate_figures)) if gate_figures else "_no figures_"
            ),
            "loss_curve": dg.MetadataValue.md(
                markdown_image(curve, "loss curve") if curve.is_file() else "_no training log_"
            ),
        },
        [
            tokenizer_check("aligned_draft", art.path, target.path, target.name),
            _gate_result(m, cfg.gate_min_gain),
        ],
    )

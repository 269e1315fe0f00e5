"""Alignment: the target answers KD prompts (`synthetic_kd_dataset`), the draft learns them (`aligned_draft`)."""

import shutil
from collections import Counter

import dagster as dg

from fastdraft_dag.assets.common import (
    TARGETS,
    build_artifact,
    result,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.kd import build_sft_arrays, generate_responses, read_rows, save_sft_npz
from fastdraft_dag.model_card import write_model_card
from fastdraft_dag.prompts import kd_prompts
from fastdraft_dag.quality import kd_response_quality
from fastdraft_dag.report import md_table
from fastdraft_dag.resources.hpu_training import HPUTrainingResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.storage.tables import record_rows

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
        description="Responses cut at max_new_tokens, counted; warns when there are any (the profiles keep them on purpose: align.drop_truncated).",
    ),
]


def kd_quality_checks(quality: dict, drops: dict) -> list[dg.AssetCheckResult]:
    """Empty responses fail; truncated ones warn: they are still the target's distribution."""
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
            "dropped_at_generation": dg.MetadataValue.json(drops),
        },
    )
    truncated = dg.AssetCheckResult(
        check_name=KD_TRUNCATED,
        asset_key="synthetic_kd_dataset",
        passed=quality["truncated"] == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{quality['truncated']} of {quality['rows']} responses stopped at max_new_tokens "
            "(kept unless align.drop_truncated)"
        ),
        metadata={
            **counts,
            "truncated": quality["truncated"],
            "truncated_fraction": quality["truncated_fraction"],
        },
    )
    return [empty, truncated]


@dg.asset(
    group_name="alignment",
    code_version="1",
    deps=["target_model"],
    partitions_def=TARGETS,
    kinds={"pytorch", "jsonl", "duckdb"},
    pool="hpu",  # the target generates on the accelerator server: one heavy job there at a time
    # Generation is resumable (rows are appended per batch), so a retry after a transient
    # failure (memory pressure, a killed worker) continues where the first attempt stopped.
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30),
    check_specs=KD_CHECKS,
    description="Instruction (ShareGPT first turns) and code (stdlib functions) prompts, disjoint from every evaluation set, answered by the target with its chat template, batched and resumable. Rows have stable ids.",
)
def synthetic_kd_dataset(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    cfg = pipeline.profile.kd

    def build(out):
        prompts = kd_prompts(cfg.n_instruction, cfg.n_code, seed=cfg.seed)
        stats = generate_responses(
            target.path,
            prompts,
            out / "kd.jsonl",
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
            temperature=cfg.temperature,
            seed=cfg.seed,
            threads=pipeline.profile.threads,
            dtype=cfg.dtype,
        )
        rows = read_rows(out / "kd.jsonl")[0]
        if not rows:
            raise RuntimeError(
                f"synthetic_kd_dataset: the target {target.name} produced no usable rows from "
                f"{len(prompts)} prompts (drops: {stats.get('drops')})"
            )
        tasks = Counter(r["task"] for r in rows)
        return {**stats, "prompts": len(prompts), "by_task": dict(tasks)}

    art = build_artifact(
        context,
        pipeline,
        target.key,
        config=pipeline.profile.section("kd"),
        inputs={"target_model": target.revision},
        build=build,
        resumable=True,
    )
    rows = read_rows(art.path / "kd.jsonl")[0]
    per_task = Counter(r["task"] for r in rows)
    record_rows(
        pipeline.db_path,
        "kd_datasets",
        art.manifest["version"],
        [
            {
                "target": target.name,
                "task": task,
                "rows": n,
                "prompt_tokens": sum(r["prompt_tokens"] for r in rows if r["task"] == task),
                "response_tokens": sum(r["response_tokens"] for r in rows if r["task"] == task),
            }
            for task, n in per_task.items()
        ],
        context.run.run_id,
    )
    sample = [
        {
            "id": r["id"],
            "task": r["task"],
            "prompt": r["prompt"][:80].replace("\n", " ").replace("|", "/"),
            "response": r["response"][:120].replace("\n", " ").replace("|", "/"),
            "finish": r["finish"],
        }
        for r in rows[:5]
    ]
    m = art.metrics
    return result(
        context,
        art,
        {
            "rows": len(rows),
            "response_tokens": sum(r["response_tokens"] for r in rows),
            "tokens_per_s": m.get("tokens_per_s"),
            "by_task": dg.MetadataValue.json(m.get("by_task", {})),
            "drops": dg.MetadataValue.json(m.get("drops", {})),
            "sample": dg.MetadataValue.md(md_table(sample)),
        },
        kd_quality_checks(kd_response_quality(rows), m.get("drops", {})),
    )


@dg.asset(
    group_name="alignment",
    code_version="2",
    deps=["pretrained_draft", "synthetic_kd_dataset", "target_model"],
    partitions_def=TARGETS,
    kinds={"pytorch", "hpu"},
    pool="hpu",
    tags={"dagster/max_runtime": str(12 * 3600)},
    check_specs=[tokenizer_check_spec("aligned_draft")],
    description="The pretrained draft fine-tuned on the target's own responses (sequence-level KD), loss on response tokens only.",
)
def aligned_draft(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, hpu: HPUTrainingResource
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    pretrained = pipeline.store.latest("pretrained_draft", target.key)
    kd = pipeline.store.latest("synthetic_kd_dataset", target.key)
    cfg = pipeline.profile.align

    def build(out):
        arrays, data_stats = build_sft_arrays(
            read_rows(kd.path / "kd.jsonl")[0],
            pretrained.path,
            cfg.max_len,
            cfg.val_fraction,
            drop_truncated=cfg.drop_truncated,
        )
        npz = out / "_work" / "sft.npz"
        npz.parent.mkdir(parents=True, exist_ok=True)
        save_sft_npz(arrays, npz)
        spec = {
            "init_dir": str(pretrained.path),
            "out_dir": str(out),
            "seed": pipeline.profile.pretrain.seed,
            "dtype": pipeline.profile.pretrain.dtype,
            "stages": [cfg.stage.to_spec({"kind": "sft", "path": str(npz)})],
        }
        metrics = hpu.train(context, spec, out / "_work")  # checkpoints: out/_checkpoints
        for scratch in (out / "_work", out / "_checkpoints"):
            shutil.rmtree(scratch, ignore_errors=True)
        metrics = {**metrics, "sft_data": data_stats}
        write_model_card(
            out,
            "Aligned FastDraft draft",
            target.name,
            metrics,
            {"pretrained_draft": pretrained.data_version, "synthetic_kd_dataset": kd.data_version},
        )
        return metrics

    art = build_artifact(
        context,
        pipeline,
        target.key,
        config={**pipeline.profile.section("align"), "backend": hpu.backend},
        inputs={
            "pretrained_draft": pretrained.data_version,
            "synthetic_kd_dataset": kd.data_version,
            "target_model": target.revision,
        },
        build=build,
        resumable=True,  # a killed run leaves .<version>.partial/_checkpoints; a rerun resumes
    )
    m = art.metrics
    return result(
        context,
        art,
        {
            "val_loss": m.get("val_loss"),
            "mfu": m.get("mfu"),
            "tensorboard": dg.MetadataValue.path(str(art.path / "tensorboard")),
            "pretrained_val_loss_on_kd": (m.get("stages") or [{}])[0].get("initial_val_loss"),
            "tokens_per_s": m.get("tokens_per_s"),
            "sft_data": dg.MetadataValue.json(m.get("sft_data", {})),
        },
        [tokenizer_check("aligned_draft", art.path, target.path, target.name)],
    )

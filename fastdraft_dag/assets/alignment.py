"""Alignment: the target answers KD prompts (`synthetic_kd_dataset`), the draft learns them (`aligned_draft`)."""

import shutil
from collections import Counter
from pathlib import Path

import dagster as dg

from fastdraft_dag.assets.common import (
    TARGETS,
    build_artifact,
    result,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.config.presets import AlignConfig
from fastdraft_dag.distill.gate import (
    gate,
    gate_table,
    held_out_acceptance,
    held_out_rows,
    train_prompt_rows,
)
from fastdraft_dag.distill.generation import generate_responses, kd_target_ir
from fastdraft_dag.distill.kd_rows import build_sft_arrays, read_rows, save_sft_npz
from fastdraft_dag.distill.on_policy import build_on_policy_arrays
from fastdraft_dag.distill.prompt_sources import (
    assemble_prompts,
    evaluation_texts,
    files_fingerprint,
    fit_to_target,
)
from fastdraft_dag.evaluation.quality import kd_response_quality
from fastdraft_dag.reporting.model_card import write_model_card
from fastdraft_dag.reporting.plots import loss_curve_plot, markdown_image, train_log_rows
from fastdraft_dag.reporting.tables import md_table
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
        description="Answers cut at max_new_tokens, dropped (kd.keep_truncated off) or kept, counted; warns when there are any.",
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
    dropped = drops.get("truncated", 0)
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
            "truncated_dropped": dropped,
            "truncated_fraction": quality["truncated_fraction"],
        },
    )
    return [empty, truncated]


@dg.asset(
    group_name="alignment",
    code_version="2",
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
    cfg = pipeline.profile.kd

    eval_files = tuple(getattr(pipeline.profile.bench, "prompt_files", ()))
    user_files = [s.path for s in cfg.prompt_sources if s.kind == "jsonl"]

    def build(out):
        try:
            eval_rows, heldout = evaluation_texts(eval_files)
            prompts, prompt_stats = assemble_prompts(
                cfg.n_instruction,
                cfg.n_code,
                cfg.seed,
                cfg.max_prompt_chars,
                cfg.prompt_sources,
                eval_rows,
            )
        except ValueError as exc:  # ContaminationError, or a bad prompt file / setting
            # A retry would fail the same way: fail at once, with the ids or the file named.
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        prompts, fit = fit_to_target(prompts, target.path, cfg.max_new_tokens)
        prompt_stats["drops"]["prompt_too_long"] = fit["prompt_too_long"]
        prompt_stats |= {"heldout_indexed": heldout, "context_len": fit["context_len"]}
        ir_dir = kd_target_ir(target.path, out / "_target_ir", cfg.backend)
        stats = generate_responses(
            target.path,
            prompts,
            out / "kd.jsonl",
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
            temperature=cfg.temperatures,
            seed=cfg.seed,
            threads=pipeline.profile.threads,
            dtype=cfg.dtype,
            backend=cfg.backend,
            ir_dir=ir_dir,
            keep_truncated=cfg.keep_truncated,
        )
        shutil.rmtree(out / "_target_ir", ignore_errors=True)  # 4 bytes/param: not kept
        rows = read_rows(out / "kd.jsonl")[0]
        if not rows:
            raise RuntimeError(
                f"synthetic_kd_dataset: the target {target.name} produced no usable rows from "
                f"{len(prompts)} prompts (drops: {stats.get('drops')})"
            )
        tasks = Counter(r["task"] for r in rows)
        return {
            **stats,
            "template": stats.get("template", fit["template"]),
            "prompts": len(prompts),
            "prompt_stats": prompt_stats,
            "by_task": dict(tasks),
        }

    inputs = {"target_model": target.revision}
    if user_files or eval_files:  # file contents, not just paths, decide the prompt set
        inputs["prompt_files"] = files_fingerprint([*user_files, *eval_files])
    art = build_artifact(
        context,
        pipeline,
        target.key,
        config=pipeline.profile.section("kd"),
        inputs=inputs,
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
            "template": m.get("template", ""),  # chat, or fallback: no chat template
            "prompt_drops": dg.MetadataValue.json(m.get("prompt_stats", {}).get("drops", {})),
            "prompt_sources": dg.MetadataValue.md(
                md_table(
                    m.get("prompt_stats", {}).get("sources", []),
                    ["source", "kind", "rows", "dropped", "drops"],
                )
            ),
            "sample": dg.MetadataValue.md(md_table(sample)),
        },
        kd_quality_checks(kd_response_quality(rows), m.get("drops", {})),
    )


GATE = "aligned_beats_pretrained"
GATE_SPEC = dg.AssetCheckSpec(
    GATE,
    asset="aligned_draft",
    blocking=True,
    description="Greedy acceptance on the held-out KD rows (draft argmax == target argmax, teacher-forced on prompt + the target's response, fp32 PyTorch) is higher for the aligned draft than for the pretrained draft it started from (by more than align.gate_min_gain).",
)


def _data_parts(
    cfg: AlignConfig, kd_npz: Path, on_policy_npz: Path | None, shards: Path | None
) -> list[dict]:
    """The align stage's data: KD rows, on-policy rows and pre-training rows, by weight."""
    rest = 1.0 - cfg.pretrain_mix
    share = cfg.on_policy_fraction if on_policy_npz else 0.0
    parts = [
        {"name": "kd", "weight": rest * (1.0 - share), "kind": "sft", "path": str(kd_npz)},
        {"name": "on_policy", "weight": rest * share, "kind": "sft", "path": str(on_policy_npz)},
        {"name": "pretrain", "weight": cfg.pretrain_mix, "kind": "packed",
         "root": str(shards), "mix": cfg.stage.mix},
    ]  # fmt: skip
    return [p for p in parts if p["weight"] > 0]


def _data_spec(parts: list[dict]) -> dict:
    """One part is plain data; several are the trainer's `mixed` kind (one seeded plan)."""
    if len(parts) == 1:
        return {k: v for k, v in parts[0].items() if k not in ("name", "weight")}
    return {"kind": "mixed", "parts": parts}


def _gate_result(m: dict, min_gain: float) -> dg.AssetCheckResult:
    figures = m.get("gate") or {}
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
    code_version="3",
    deps=["pretrained_draft", "synthetic_kd_dataset", "tokenized_shards", "target_model"],
    partitions_def=TARGETS,
    kinds={"pytorch", "hpu"},
    pool="hpu",
    tags={"dagster/max_runtime": str(12 * 3600)},
    check_specs=[tokenizer_check_spec("aligned_draft"), GATE_SPEC],
    description="The pretrained draft fine-tuned on the target's own responses (sequence-level KD; loss on response tokens only), optionally mixed with on-policy rows (the draft's own samples labelled by the target's argmax) and pre-training sequences. Gated: held-out greedy acceptance must beat the pretrained draft's.",
)
def aligned_draft(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, hpu: HPUTrainingResource
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    pretrained = pipeline.store.latest("pretrained_draft", target.key)
    kd = pipeline.store.latest("synthetic_kd_dataset", target.key)
    shards = (
        pipeline.store.latest("tokenized_shards", target.key)
        if pipeline.profile.align.pretrain_mix
        else None
    )
    cfg = pipeline.profile.align

    def build(out):
        rows = read_rows(kd.path / "kd.jsonl")[0]
        arrays, data_stats = build_sft_arrays(
            rows, pretrained.path, cfg.max_len, cfg.val_fraction, drop_truncated=cfg.drop_truncated
        )
        work = out / "_work"
        work.mkdir(parents=True, exist_ok=True)
        save_sft_npz(arrays, work / "sft.npz")
        on_policy_npz, on_policy_stats = None, {}
        if cfg.on_policy:
            context.log.info("on-policy: the pretrained draft answers the KD train prompts")
            op_arrays, on_policy_stats = build_on_policy_arrays(
                target.path,
                pretrained.path,
                train_prompt_rows(rows, cfg.val_fraction),
                cfg.max_len,
                pipeline.profile.kd.max_new_tokens,
                cfg.on_policy_temperature,
                pipeline.profile.kd.batch_size,
                seed=pipeline.profile.pretrain.seed,
                threads=pipeline.profile.threads or None,
            )
            # Validate on the KD held-out rows: the target's own answers, what the gate uses.
            op_arrays |= {k: v for k, v in arrays.items() if k.startswith("val_")}
            on_policy_npz = work / "on_policy.npz"
            save_sft_npz(op_arrays, on_policy_npz)
        parts = _data_parts(cfg, work / "sft.npz", on_policy_npz, shards.path if shards else None)
        data = _data_spec(parts)
        spec = {
            "init_dir": str(pretrained.path),
            "out_dir": str(out),
            "seed": pipeline.profile.pretrain.seed,
            "dtype": pipeline.profile.pretrain.dtype,
            "stages": [cfg.stage.to_spec(data)],
        }
        metrics = hpu.train(context, spec, work)  # checkpoints: out/_checkpoints
        for scratch in (work, out / "_checkpoints"):
            shutil.rmtree(scratch, ignore_errors=True)
        context.log.info("gate: held-out greedy acceptance, pretrained vs aligned")
        figures = held_out_acceptance(
            target.path,
            {"pretrained": pretrained.path, "aligned": out},
            held_out_rows(rows, cfg.val_fraction, drop_truncated=cfg.drop_truncated),
            cfg.max_len,
            threads=pipeline.profile.threads or None,
        )
        log_rows = train_log_rows(out / "train_log.jsonl")
        if log_rows:
            loss_curve_plot(log_rows, out / "loss_curve.png", f"alignment of {target.name}")
        metrics = {
            **metrics,
            "sft_data": data_stats,
            "on_policy": on_policy_stats,
            "data_parts": [{k: p[k] for k in ("name", "kind", "weight")} for p in parts],
            "gate": figures,
        }
        write_model_card(
            out,
            "Aligned FastDraft draft",
            target.name,
            metrics,
            {"pretrained_draft": pretrained.data_version, "synthetic_kd_dataset": kd.data_version},
        )
        return metrics

    inputs = {
        "pretrained_draft": pretrained.data_version,
        "synthetic_kd_dataset": kd.data_version,
        "target_model": target.revision,
    }
    if shards:
        inputs["tokenized_shards"] = shards.data_version
    # The gate threshold judges the artifact; it is no part of what the artifact is.
    config = {k: v for k, v in pipeline.profile.section("align").items() if k != "gate_min_gain"}
    art = build_artifact(
        context,
        pipeline,
        target.key,
        config={**config, "backend": hpu.backend},
        inputs=inputs,
        build=build,
        resumable=True,  # a killed run leaves .<version>.partial/_checkpoints; a rerun resumes
    )
    m = art.metrics
    gate_figures = m.get("gate") or {}
    curve = art.path / "loss_curve.png"
    return result(
        context,
        art,
        {
            "val_loss": m.get("val_loss"),
            "mfu": m.get("mfu"),
            "tensorboard": dg.MetadataValue.path(str(art.path / "tensorboard")),
            "stages": dg.MetadataValue.json(m.get("stages", [])),
            "pretrained_val_loss_on_kd": (m.get("stages") or [{}])[0].get("initial_val_loss"),
            "tokens_per_s": m.get("tokens_per_s"),
            "sft_data": dg.MetadataValue.json(m.get("sft_data", {})),
            "data_parts": dg.MetadataValue.json(m.get("data_parts", [])),
            "on_policy": dg.MetadataValue.json(m.get("on_policy", {})),
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

"""`benchmark_tables`: acceptance, tau and MBSU per draft precision from logits; live SD per k.

Writes a deployable release (the SD draft IR with the best measured k, a model card, plots).
"""

import json
from collections import defaultdict
from pathlib import Path

import dagster as dg

from fastdraft_dag.assets.common import build_artifact, result
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.evaluation.offline import TORCH_FP32, evaluate_offline
from fastdraft_dag.evaluation.quality import acceptance_regressions, quantized_acceptance_losses
from fastdraft_dag.evaluation.results import bench_prompt_set, wallclock_db_rows, write_release
from fastdraft_dag.reporting import plots
from fastdraft_dag.reporting.model_card import release_card
from fastdraft_dag.reporting.tables import render_benchmark
from fastdraft_dag.resources.core_ultra import CoreUltraResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.storage.artifacts import write_json_atomic
from fastdraft_dag.storage.tables import previous_acceptance, record_rows
from fastdraft_dag.targets.resolve import sha256_file

ACCEPTANCE = "acceptance_not_regressed"
QUANTIZED = "quantized_draft_acceptance"
QUANTIZATION_TOLERANCE = 0.02  # absolute alpha_greedy, like the regression check's default


def acceptance_check(
    offline: list[dict], previous_version: str | None, previous: dict, tolerance: float
) -> dg.AssetCheckResult:
    """alpha_greedy per task of the PyTorch fp32 draft against this target's previous benchmark.

    Quantized precisions are judged against their float reference by the quantization check.
    """
    by_task = defaultdict(list)
    for row in offline:
        if row.get("precision", TORCH_FP32) == TORCH_FP32:
            by_task[row["task"]].append(row["alpha_greedy"])
    current = {t: sum(v) / len(v) for t, v in by_task.items()}
    regressions = acceptance_regressions(current, previous, tolerance)
    if previous_version is None:
        desc = "no previous benchmark of this target: nothing to compare"
    elif regressions:
        worst = max(regressions, key=lambda r: r["drop"])
        desc = (
            f"alpha_greedy fell by more than {tolerance} on {len(regressions)} task(s) against "
            f"benchmark {previous_version} (worst: {worst['task']} "
            f"{worst['previous']} -> {worst['current']})"
        )
    else:
        desc = f"no task fell by more than {tolerance} against benchmark {previous_version}"
    return dg.AssetCheckResult(
        check_name=ACCEPTANCE,
        asset_key="benchmark_tables",
        passed=not regressions,
        severity=dg.AssetCheckSeverity.ERROR,
        description=desc,
        metadata={
            "tolerance": tolerance,
            "previous_version": previous_version or "",
            "current": dg.MetadataValue.json({t: round(a, 4) for t, a in current.items()}),
            "previous": dg.MetadataValue.json({t: round(a, 4) for t, a in previous.items()}),
            "regressions": dg.MetadataValue.json(regressions),
        },
    )


def quantization_check(offline: list[dict]) -> dg.AssetCheckResult:
    """Warn when an int8/int4 draft IR loses acceptance against the float draft on some task."""
    q = quantized_acceptance_losses(offline, QUANTIZATION_TOLERANCE)
    if not q["losses"]:
        desc = "no quantized draft was scored: nothing to compare"
    elif q["failures"]:
        worst = max(q["failures"], key=lambda x: x["loss"])
        desc = (
            f"{len(q['failures'])} (precision, task) pair(s) lose more than "
            f"{QUANTIZATION_TOLERANCE} alpha_greedy against the {q['reference']} draft (worst: "
            f"{worst['precision']} on {worst['task']}, {worst['reference']} -> "
            f"{worst['alpha_greedy']})"
        )
    else:
        desc = (
            f"every quantized draft within {QUANTIZATION_TOLERANCE} of the {q['reference']} draft"
        )
    return dg.AssetCheckResult(
        check_name=QUANTIZED,
        asset_key="benchmark_tables",
        passed=not q["failures"],
        severity=dg.AssetCheckSeverity.WARN,
        description=desc,
        metadata={
            "tolerance": QUANTIZATION_TOLERANCE,
            "reference": q["reference"],
            "losses": dg.MetadataValue.json(q["losses"]),
            "failures": dg.MetadataValue.json(q["failures"]),
        },
    )


@dg.asset(
    group_name="evaluation",
    code_version="2",
    deps=["openvino_ir", "aligned_draft", "target_model"],
    partitions_def=TARGETS,
    kinds={"openvino", "duckdb"},
    pool="core_ultra",
    check_specs=[
        dg.AssetCheckSpec(
            ACCEPTANCE,
            asset="benchmark_tables",
            blocking=True,
            description="alpha_greedy per task of the PyTorch fp32 draft has not fallen by more than the pipeline's acceptance_tolerance against this target's previous benchmark (DuckDB benchmark_offline).",
        ),
        dg.AssetCheckSpec(
            QUANTIZED,
            asset="benchmark_tables",
            blocking=False,
            description="No int8/int4 draft IR loses more than 0.02 alpha_greedy on any task against the fp16 draft IR (the PyTorch fp32 draft when fp16 is not exported). A warning: a quantized draft can still be the fastest.",
        ),
    ],
    description="Per draft precision (PyTorch fp32 and every exported IR), task family and k: greedy and sampled acceptance, tau and memory-bound speedup from target and draft logits. Live on the Core Ultra resource: plain decoding, speculative decoding per k, prompt lookup and the optional reference draft, with SD/plain agreement. The best measured k goes into a release folder (draft IR + model card). Rows go to DuckDB with history.",
)
def benchmark_tables(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, core_ultra: CoreUltraResource
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    draft = pipeline.store.latest("aligned_draft", target.key)
    irs = pipeline.store.latest("openvino_ir", target.key)
    cfg = pipeline.profile.bench
    export = pipeline.profile.export
    core_ultra.validate()
    # Both prompt sets are built (and refused when empty or unreadable) before any model loads.
    prompts, malformed = bench_prompt_set(cfg.prompts_per_family, cfg.prompt_files)
    live_prompts, _ = bench_prompt_set(
        cfg.sd_prompts_per_family,
        cfg.prompt_files,
        per_user_task=cfg.sd_prompts_per_family,
        setting="bench.sd_prompts_per_family",
    )
    sd_ir = irs.path / f"draft-{cfg.sd_draft_format}"
    reference_ir = irs.path / f"reference-draft-{cfg.sd_draft_format}"

    def build(out):
        offline = evaluate_offline(
            target.path,
            draft.path,
            prompts,
            cfg.offline_max_new_tokens,
            list(cfg.ks),
            threads=pipeline.profile.threads,
            draft_irs={f: irs.path / f"draft-{f}" for f in export.draft_formats},
            target_precision=export.target_format,
        )
        live = core_ultra.benchmark_live(
            irs.path / f"target-{export.target_format}",
            sd_ir,
            live_prompts,
            tokenizer_dir=target.path,
            max_new_tokens=cfg.sd_max_new_tokens,
            ks=list(cfg.sd_ks),
            margin_model_dir=target.path,
            prompt_lookup=cfg.prompt_lookup,
            reference_draft_ir=reference_ir if cfg.reference_draft else None,
        )
        best_k = int(live["best_k"])  # max pooled SD tokens/s over sd_ks (sd_benchmark.choose_k)
        tables = {
            "offline": offline,
            "wallclock": live["rows"],
            "best_k": best_k,
            "device": core_ultra.device,
            "divergences": live.get("divergences", []),
            "samples": live.get("samples", []),
            "malformed_prompts": malformed,
        }
        write_json_atomic(out / "results.json", tables)
        summary = render_benchmark(tables)
        (out / "results.md").write_text(summary)
        figures = plots.benchmark_plots(out, offline, live["rows"], cfg.sd_draft_format)
        card = release_card(
            target=target.name,
            draft_precision=cfg.sd_draft_format,
            best_k=best_k,
            device=core_ultra.device,
            summary_md=summary,
            images=plots.BENCHMARK_PLOTS,
            lineage={"aligned_draft": draft.data_version, "openvino_ir": irs.data_version},
        )
        files = {plots.BENCHMARK_PLOTS[alt]: path for alt, path in figures.items()}
        write_release(out / "release", sd_ir, best_k, card, files)
        return {"best_k": best_k, "rows_offline": len(offline), "rows_live": len(live["rows"])}

    art = build_artifact(
        context,
        pipeline,
        target.key,
        config={
            **pipeline.profile.section("bench"),
            "device": core_ultra.device,
            "precision_hint": core_ultra.precision_hint,
            "threads": core_ultra.threads,
        },
        inputs={
            "openvino_ir": irs.data_version,
            "aligned_draft": draft.data_version,
            "target_model": target.revision,
            **{f"prompt_file:{p}": sha256_file(Path(p)) for p in cfg.prompt_files},
        },
        build=build,
    )
    tables = json.loads((art.path / "results.json").read_text())
    version = art.manifest["version"]
    common = {"target": target.name, "draft_version": draft.data_version}
    offline_rows = [
        {**common, "target_precision": export.target_format, **r} for r in tables["offline"]
    ]
    record_rows(pipeline.db_path, "benchmark_offline", version, offline_rows, context.run.run_id)
    live_rows = wallclock_db_rows(tables["wallclock"], cfg.sd_draft_format, export.target_format)
    wall_rows = [{**common, **r} for r in live_rows]
    record_rows(pipeline.db_path, "benchmark_wallclock", version, wall_rows, context.run.run_id)
    best = next(
        (
            r
            for r in tables["wallclock"]
            if r["mode"] == "sd" and r["task"] == "all" and r["k"] == tables["best_k"]
        ),
        {},
    )
    previous_version, previous = previous_acceptance(pipeline.db_path, target.name, version)
    return result(
        context,
        art,
        {
            "summary": dg.MetadataValue.md((art.path / "results.md").read_text()),
            "best_k": tables["best_k"],
            "device": tables["device"],
            "speedup": best.get("speedup"),
            "agreement": best.get("agreement"),
            "malformed_prompts": dg.MetadataValue.json(tables["malformed_prompts"]),
            "release": dg.MetadataValue.path(str(art.path / "release")),
            **{
                alt.replace(" ", "_"): dg.MetadataValue.md(
                    plots.markdown_image(art.path / name, alt)
                )
                for alt, name in plots.BENCHMARK_PLOTS.items()
            },
        },
        [
            acceptance_check(
                tables["offline"], previous_version, previous, pipeline.acceptance_tolerance
            ),
            quantization_check(tables["offline"]),
        ],
    )

"""`benchmark_tables`: acceptance, tau and MBSU from logits, and wall-clock speculative decoding."""

import json
from collections import defaultdict

import dagster as dg

from fastdraft_dag.assets.common import TARGETS, build_artifact, result
from fastdraft_dag.offline_eval import evaluate_offline
from fastdraft_dag.prompts import EVAL_FAMILIES, eval_prompts
from fastdraft_dag.quality import acceptance_regressions
from fastdraft_dag.report import render_benchmark
from fastdraft_dag.resources.core_ultra import CoreUltraResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.storage.artifacts import write_json_atomic
from fastdraft_dag.storage.tables import previous_acceptance, record_rows

ACCEPTANCE = "acceptance_not_regressed"


def acceptance_check(
    offline: list[dict], previous_version: str | None, previous: dict, tolerance: float
) -> dg.AssetCheckResult:
    """alpha_greedy per task against the same target's previous benchmark in DuckDB."""
    by_task = defaultdict(list)
    for row in offline:
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


@dg.asset(
    group_name="evaluation",
    code_version="1",
    deps=["openvino_ir", "aligned_draft", "target_model"],
    partitions_def=TARGETS,
    kinds={"openvino", "duckdb"},
    pool="core_ultra",
    check_specs=[
        dg.AssetCheckSpec(
            ACCEPTANCE,
            asset="benchmark_tables",
            blocking=True,
            description="alpha_greedy per task has not fallen by more than the pipeline's acceptance_tolerance against this target's previous benchmark (DuckDB benchmark_offline).",
        )
    ],
    description="Per task family and k: greedy and sampled acceptance, tau and memory-bound speedup from target and draft logits; wall-clock speedup of openvino_genai speculative decoding over plain decoding on the Core Ultra resource, with SD/plain agreement. Rows go to DuckDB with history.",
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

    def build(out):
        prompts = [p for fam in EVAL_FAMILIES for p in eval_prompts(fam, cfg.prompts_per_family)]
        offline = evaluate_offline(
            target.path,
            draft.path,
            prompts,
            cfg.offline_max_new_tokens,
            list(cfg.ks),
            threads=pipeline.profile.threads,
        )
        sd_prompts = [
            p for fam in EVAL_FAMILIES for p in eval_prompts(fam, cfg.sd_prompts_per_family)
        ]
        wall = core_ultra.benchmark_sd(
            irs.path / f"target-{export.target_format}",
            irs.path / f"draft-{cfg.sd_draft_format}",
            sd_prompts,
            tokenizer_dir=target.path,
            max_new_tokens=cfg.sd_max_new_tokens,
            k=cfg.sd_k,
            margin_model_dir=target.path,
        )
        tables = {
            "offline": offline,
            "wallclock": [*wall["per_task"], wall["overall"]],
            "wallclock_overall": wall["overall"],
        }
        write_json_atomic(out / "results.json", tables)
        (out / "results.md").write_text(render_benchmark(tables))
        return {"overall": wall["overall"], "rows_offline": len(offline)}

    art = build_artifact(
        context,
        pipeline,
        target.key,
        config={
            **pipeline.profile.section("bench"),
            "device": core_ultra.device,
            "precision_hint": core_ultra.precision_hint,
        },
        inputs={
            "openvino_ir": irs.data_version,
            "aligned_draft": draft.data_version,
            "target_model": target.revision,
        },
        build=build,
    )
    tables = json.loads((art.path / "results.json").read_text())
    version = art.manifest["version"]
    common = {"target": target.name, "draft_version": draft.data_version}
    offline_rows = [{**common, **r} for r in tables["offline"]]
    record_rows(pipeline.db_path, "benchmark_offline", version, offline_rows, context.run.run_id)
    precisions = {"draft_precision": cfg.sd_draft_format, "target_precision": export.target_format}
    wall_rows = [{**common, **precisions, **r} for r in tables["wallclock"]]
    record_rows(pipeline.db_path, "benchmark_wallclock", version, wall_rows, context.run.run_id)
    overall = tables["wallclock_overall"]
    previous_version, previous = previous_acceptance(pipeline.db_path, target.name, version)
    return result(
        context,
        art,
        {
            "summary": dg.MetadataValue.md(render_benchmark(tables)),
            "speedup": overall.get("speedup"),
            "agreement": overall.get("agreement"),
        },
        [
            acceptance_check(
                tables["offline"], previous_version, previous, pipeline.acceptance_tolerance
            )
        ],
    )

"""`benchmark_tables`: acceptance, tau and MBSU per draft precision; every live decoding mode.

Reads its inputs, calls `evaluation.benchmark.run_benchmark` (offline and live on the Core
Ultra resource, mode choice, release folder), records DuckDB rows and reports metadata and checks.
"""

import tempfile
from collections import defaultdict
from pathlib import Path

import dagster as dg

from fastdraft_dag.assets.common import build_artifact, result
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.core.files import sha256_file
from fastdraft_dag.evaluation.benchmark import (
    RELEASE_DIR,
    RESULTS_MD,
    BenchmarkJob,
    BenchmarkResult,
    prompt_sets,
    run_benchmark,
)
from fastdraft_dag.evaluation.modes import ModeChoice, verdict
from fastdraft_dag.evaluation.offline import TORCH_FP32, OfflineRow
from fastdraft_dag.evaluation.quality import acceptance_regressions, quantized_acceptance_losses
from fastdraft_dag.evaluation.results import wallclock_db_rows
from fastdraft_dag.reporting import plots
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.resources.core_ultra import CoreUltraResource
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.storage.tables import benchmark_history, previous_acceptance, record_rows
from fastdraft_dag.targets.resolve import card_metadata

ACCEPTANCE = "acceptance_not_regressed"
QUANTIZED = "quantized_draft_acceptance"
DRAFT_PAYS = "draft_pays_for_itself"
QUANTIZATION_TOLERANCE = 0.02  # absolute alpha_greedy, like the regression check's default


def acceptance_check(
    offline: list[OfflineRow], previous_version: str | None, previous: dict, tolerance: float
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


def quantization_check(offline: list[OfflineRow]) -> dg.AssetCheckResult:
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


def draft_pays_check(choice: ModeChoice) -> dg.AssetCheckResult:
    """Warn when the draft's best SD mode is slower than plain decoding or than prompt lookup.

    A warning, not a block: the release already ships the fastest mode, plain included.
    """
    return dg.AssetCheckResult(
        check_name=DRAFT_PAYS,
        asset_key="benchmark_tables",
        passed=choice.sd_pays,
        severity=dg.AssetCheckSeverity.WARN,
        description=verdict(choice),
        metadata={
            "chosen_mode": choice.chosen.label,
            "chosen_speedup": round(choice.chosen.speedup, 4),
            "speedups": dg.MetadataValue.json(choice.speedups()),
            "sd_vs_prompt_lookup": choice.sd_vs_lookup,
            "figures": dg.MetadataValue.json(choice.to_dict()),
        },
    )


def _history_image(history: list[dict], target: str) -> str:
    """The trend plot inlined (the artifact's files are final: the plot is not one of them)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = plots.history_plot(history, Path(tmp) / "history.png", target)
        return plots.markdown_image(path, "draft versions over time")


@dg.asset(
    group_name="evaluation",
    code_version="6",  # 6: plain decoding measured beside every drafted phase
    deps=["openvino_ir", "aligned_draft", "eagle3_head", "target_model"],
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
        dg.AssetCheckSpec(
            DRAFT_PAYS,
            asset="benchmark_tables",
            blocking=False,
            description="The draft's best speculative-decoding mode (any k or confidence threshold) is faster than plain decoding and than prompt lookup at its own best k, pooled over the live prompts. A warning: the release ships the fastest mode measured, plain included.",
        ),
    ],
    description="Per draft precision (PyTorch fp32 and every exported IR), task family and k: greedy and sampled acceptance, tau and memory-bound speedup from target and draft logits. Live on the Core Ultra resource: plain decoding, speculative decoding per k and per confidence threshold, prompt lookup per k and the optional reference draft, with SD/plain agreement and a 95% bootstrap interval over prompts beside each speedup. The fastest measured mode (plain included) goes into a release folder (draft IR + model card + release.json). Rows go to DuckDB with history.",
)
def benchmark_tables(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline, core_ultra: CoreUltraResource
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    settings = pipeline.profile.settings("benchmark_tables")
    kinds = settings.draft_kinds
    draft = pipeline.store.latest("aligned_draft", target.key) if "standalone" in kinds else None
    head = pipeline.store.latest("eagle3_head", target.key) if "eagle3" in kinds else None
    irs = pipeline.store.latest("openvino_ir", target.key)
    drafts = {"aligned_draft": draft, "eagle3_head": head}
    versions = {name: a.data_version for name, a in drafts.items() if a is not None}
    bench = settings.bench
    core_ultra.validate()
    prompts = prompt_sets(bench)  # refused when empty or unreadable, before any model loads
    base_model, license_id = card_metadata(target.name, target.path)
    job = BenchmarkJob(
        target_name=target.name,
        target_dir=target.path,
        draft_dir=draft.path if draft else None,
        irs_dir=irs.path,
        bench=bench,
        draft_formats=tuple(settings.export.draft_formats),
        target_format=settings.export.target_format,
        threads=settings.threads,
        lineage={**versions, "openvino_ir": irs.data_version},
        base_model=base_model,
        license_id=license_id,
        head_dir=head.path if head else None,
        head_offline=(head.metrics.get("offline") or {}) if head else {},
    )
    art = build_artifact(
        context,
        pipeline,
        target.key,
        config={
            **pipeline.profile.version_config("benchmark_tables"),
            "device": core_ultra.device,
            "precision_hint": core_ultra.precision_hint,
            "core_ultra_threads": core_ultra.threads,
        },
        inputs={
            "openvino_ir": irs.data_version,
            **versions,
            "target_model": target.revision,
            **{f"prompt_file:{p}": sha256_file(Path(p)) for p in bench.prompt_files},
        },
        build=lambda out: run_benchmark(job, prompts, core_ultra, out).metrics(),
    )
    res = BenchmarkResult.load(art.path)
    version = art.manifest["version"]
    common = {"target": target.name, "draft_version": versions.get("aligned_draft", "")}
    target_format = settings.export.target_format
    offline_rows = [{**common, "target_precision": target_format, **r} for r in res.offline]
    built = art.manifest.get("built_at")
    record_rows(
        pipeline.db_path, "benchmark_offline", version, offline_rows, context.run.run_id, built
    )
    live_rows = wallclock_db_rows(res.wallclock, bench.sd_draft_format, target_format)
    wall_rows = [{**common, **r} for r in live_rows]
    record_rows(
        pipeline.db_path, "benchmark_wallclock", version, wall_rows, context.run.run_id, built
    )
    previous_version, previous = previous_acceptance(pipeline.db_path, target.name, version)
    history = benchmark_history(pipeline.db_path, target.name)
    choice = res.choice
    best_sd = choice.best_sd
    return result(
        context,
        art,
        {
            "summary": dg.MetadataValue.md((art.path / RESULTS_MD).read_text()),
            "release_mode": choice.chosen.label,
            "release_speedup": round(choice.chosen.speedup, 4),
            "best_k": res.best_k,
            "device": res.device,
            "sd_speedup": round(best_sd.speedup, 4) if best_sd else None,
            "eagle3_speedup": (
                round(choice.best_eagle3.speedup, 4) if choice.best_eagle3 else None
            ),
            "eagle3_offline_tau_k3": res.eagle3_offline.get("tau_k3"),
            "prompt_lookup_speedup": (
                round(choice.best_lookup.speedup, 4) if choice.best_lookup else None
            ),
            "malformed_prompts": dg.MetadataValue.json(res.malformed_prompts),
            "release": dg.MetadataValue.path(str(art.path / RELEASE_DIR)),
            "history": dg.MetadataValue.md(md_table(history)),
            "history_plot": dg.MetadataValue.md(_history_image(history, target.name)),
            **{
                alt.replace(" ", "_"): dg.MetadataValue.md(
                    plots.markdown_image(art.path / name, alt)
                )
                for alt, name in plots.BENCHMARK_PLOTS.items()
            },
        },
        [
            acceptance_check(
                res.offline, previous_version, previous, pipeline.acceptance_tolerance
            ),
            quantization_check(res.offline),
            draft_pays_check(choice),
        ],
    )

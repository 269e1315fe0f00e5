"""What every asset does the same way: build its artifact, report metadata, check tokenizers.

A helper module, not an asset module: asset modules import this and the library, never each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from fastdraft_dag.core.drops import Drops
from fastdraft_dag.core.tokenizers import compare_tokenizers
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.storage.artifacts import (
    Artifact,
    ArtifactCorruptError,
    DiskFullError,
    ManifestError,
)
from fastdraft_dag.storage.tables import TableFileError

# What the next step reads from each artifact: a reuse checks these files' checksums (sizes of
# all files are always checked; FASTDRAFT_VERIFY=all checks every checksum).
CONSUMED: dict[str, tuple[str, ...]] = {
    "filtered_corpora": ("corpus.parquet",),
    "tokenized_shards": ("index.json", "*/*.npy", "*/*.bin", "tokenizer/*"),
    "synthetic_kd_dataset": ("kd.jsonl",),
    "pretrained_draft": ("model.safetensors", "config.json", "draft_vocab.json", "tokenizer*"),
    "aligned_draft": ("model.safetensors", "config.json", "draft_vocab.json", "tokenizer*"),
    "eagle3_head": ("model.safetensors", "config.json", "eagle3_layers.json", "tokenizer*"),
    "openvino_ir": ("*/*.xml", "*/*.bin"),
    "benchmark_tables": ("results.json", "release/*"),  # what users load is checked on reuse
}
# Failures a retry cannot fix: the step fails at once instead of waiting out its retries.
PERMANENT_ERRORS = (ManifestError, ArtifactCorruptError, DiskFullError, TableFileError)
# Runs stopped by Ctrl-C or a cancel: their later steps do not start (the CLI exits 130).
INTERRUPTED_RUNS: set[str] = set()
INTERRUPTED = "interrupted (Ctrl-C or cancel); its partial work is kept and a rerun resumes from it"


@contextmanager
def fail_fast_on_permanent_errors(run_id: str) -> Iterator[None]:
    """Turn a permanent error into a Failure with retries off (retry policies are for transients).

    An interrupt is one too: Dagster turns Ctrl-C inside a step with a retry policy into a
    retry, so the run went on after the user stopped it. Here it fails the step for good, and
    the run's later steps refuse to start.
    """
    if run_id in INTERRUPTED_RUNS:
        raise dg.Failure(description=f"not started: the run was {INTERRUPTED}", allow_retries=False)
    try:
        yield
    except PERMANENT_ERRORS as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as exc:
        INTERRUPTED_RUNS.add(run_id)
        raise dg.Failure(description=INTERRUPTED, allow_retries=False) from exc


def build_artifact(
    context: dg.AssetExecutionContext,
    pipeline: FastDraftPipeline,
    partition: str,
    *,
    config: Mapping[str, Any],
    inputs: Mapping[str, str],
    build: Callable[[Path], Mapping[str, Any]],
    resumable: bool = False,
) -> Artifact:
    """This asset's artifact for these inputs: reused when its version exists and verifies,
    else built (a broken copy is set aside with a warning naming the bad files). Its manifest
    keeps the run's whole recipe (`fastdraft config show --artifact`)."""
    asset = context.asset_key.to_user_string()
    with fail_fast_on_permanent_errors(context.run_id):
        return pipeline.store.build(
            asset,
            partition,
            code_version=context.assets_def.code_versions_by_key[context.asset_key] or "",
            config=config,
            inputs=inputs,
            build=build,
            resumable=resumable,
            consumed=CONSUMED.get(asset, ()),
            log=context.log.warning,
            recipe=pipeline.recipe,
        )


def build_trained(
    context: dg.AssetExecutionContext,
    pipeline: FastDraftPipeline,
    partition: str,
    *,
    backend: str,
    inputs: Mapping[str, str],
    build: Callable[[Path], Mapping[str, Any]],
) -> Artifact:
    """A training asset's artifact: its settings and the training backend make the version, and
    a killed run leaves `.<version>.partial/_checkpoints` that the next run resumes from."""
    asset = context.asset_key.to_user_string()
    return build_artifact(
        context,
        pipeline,
        partition,
        config={**pipeline.profile.version_config(asset), "backend": backend},
        inputs=inputs,
        build=build,
        resumable=True,
    )


def artifact_metadata(artifact: Artifact) -> dict[str, Any]:
    m = artifact.manifest
    return {
        "path": dg.MetadataValue.path(str(artifact.path)),
        "artifact_version": m["version"],
        "reused": artifact.reused,
        "build_seconds": m.get("build_seconds", 0.0),
        **({"peak_rss_mib": m["peak_rss_mib"]} if "peak_rss_mib" in m else {}),
        "inputs": dg.MetadataValue.json(m.get("inputs", {})),
    }


DROPS = "drops"  # the one metadata key for what an asset (or check) left out, reason -> count


def drops_metadata(drops: Drops) -> dict[str, dg.MetadataValue]:
    """``{"drops": {reason: count}}``, sorted, zero counts left out; `{}` when nothing dropped."""
    return {DROPS: dg.MetadataValue.json(drops.as_dict())}


def sft_drops(sft_data: Mapping[str, Any], on_policy: Mapping[str, Any]) -> Drops:
    """KD rows left out of an SFT set (`build_sft_arrays`' stats) and prompts left out of the
    on-policy set, one phase each: `sft:unfinished`, `sft:prompt_too_long`,
    `on_policy:prompt_too_long`."""
    return Drops.phases(
        {
            "sft": {
                "unfinished": int(sft_data.get("dropped_unfinished", 0)),
                "prompt_too_long": int(sft_data.get("dropped_prompt_too_long", 0)),
            },
            "on_policy": {
                "prompt_too_long": int(on_policy.get("skipped_prompt_too_long", 0)),
            },
        }
    )


def result(
    context: dg.AssetExecutionContext,
    artifact: Artifact,
    metadata: Mapping[str, Any] | None = None,
    check_results: Sequence[dg.AssetCheckResult] = (),
) -> dg.MaterializeResult:
    if artifact.reused:
        context.log.info(f"up to date: reusing {artifact.path}")
    return dg.MaterializeResult(
        metadata={**artifact_metadata(artifact), **(metadata or {})},
        data_version=dg.DataVersion(artifact.data_version),
        check_results=list(check_results),
    )


TOKENIZER_CHECK = "tokenizer_matches_target"


def tokenizer_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        TOKENIZER_CHECK,
        asset=asset,
        blocking=True,
        description="The tokens decoding reads (vocabulary, special and added tokens) equal the target's; a chat template that differs is reported, not failed.",
    )


def tokenizer_check(
    asset: str, candidate: Path, target: Path, target_name: str
) -> dg.AssetCheckResult:
    found = compare_tokenizers(candidate, target)
    desc = f"{asset} tokenizer at {candidate} vs target {target_name} at {target}"
    verdict = "MISMATCH" if found.blocking else "same tokens" if found.warnings else "identical"
    return dg.AssetCheckResult(
        check_name=TOKENIZER_CHECK,
        asset_key=asset,
        passed=not found.blocking,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "compared": desc,
            "differences": dg.MetadataValue.json(found.blocking),
            "warnings": dg.MetadataValue.json(found.warnings),
        },
        description=f"{verdict}: {desc}",
    )

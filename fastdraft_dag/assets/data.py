"""Data assets: `filtered_corpora` (target-independent) and `tokenized_shards` (per target)."""

import json
import os

import dagster as dg

from fastdraft_dag.assets.common import (
    build_artifact,
    drops_metadata,
    result,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.assets.partitions import TARGETS
from fastdraft_dag.core.shards import ShardChecksumError, verify_shards
from fastdraft_dag.data.corpus import CorpusOptions, build_corpus, corpus_drops
from fastdraft_dag.data.packing import tokenize_and_pack
from fastdraft_dag.reporting.plots import funnel_plot, markdown_image
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.storage.tables import record_rows

SHARED = "shared"


@dg.asset(
    group_name="data",
    code_version="3",
    kinds={"duckdb", "parquet"},
    pool="duckdb_writer",
    description="Text and code from the configured sources, quality-filtered (Gopher/C4/FineWeb-style text rules, StarCoder-style code rules) and deduplicated (exact + MinHash LSH) in DuckDB, with a funnel of every drop.",
)
def filtered_corpora(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline
) -> dg.MaterializeResult:
    settings = pipeline.profile.settings("filtered_corpora")
    cfg = settings.corpora
    options = CorpusOptions(
        workers=settings.threads or os.cpu_count() or 1,
        files_per_unit=cfg.files_per_unit,
        filters=cfg.filters,
        dedup=cfg.dedup,
    )

    def build(out):
        built = build_corpus(list(cfg.sources), out, options)
        funnel_plot(built["funnel"], out / "funnel.png")
        return {
            "sources": built["stats"],
            "funnel": built["funnel"],
            "docs_kept": sum(s["docs_kept"] for s in built["stats"]),
            "bytes_kept": sum(s["bytes_kept"] for s in built["stats"]),
        }

    # Resumable: finished units stay in the partial directory, so a failed run restarts from them.
    art = build_artifact(
        context,
        pipeline,
        SHARED,
        config=pipeline.profile.version_config("filtered_corpora"),
        inputs={},
        build=build,
        resumable=True,
    )
    stats, funnel, version = art.metrics["sources"], art.metrics["funnel"], art.manifest["version"]
    run_id = context.run.run_id
    record_rows(
        pipeline.db_path,
        "corpus_stats",
        version,
        [{**s, "dropped": json.dumps(s["dropped"])} for s in stats],
        run_id,
        art.manifest.get("built_at"),
    )
    record_rows(
        pipeline.db_path, "corpus_funnel", version, funnel, run_id, art.manifest.get("built_at")
    )
    per_source = [{k: v for k, v in s.items() if k != "dropped"} for s in stats]
    dropped = [
        {k: r[k] for k in ("source", "stage", "step", "docs", "bytes")}
        for r in funnel
        if r["docs"] and r["stage"] != "kept"
    ]
    return result(
        context,
        art,
        {
            "docs_kept": art.metrics["docs_kept"],
            "bytes_kept": art.metrics["bytes_kept"],
            "per_source": dg.MetadataValue.md(md_table(per_source)),
            **drops_metadata(corpus_drops(funnel)),
            "funnel": dg.MetadataValue.md(md_table(dropped) if dropped else "nothing dropped"),
            "funnel_plot": dg.MetadataValue.md(markdown_image(art.path / "funnel.png", "funnel")),
        },
    )


@dg.asset(
    group_name="data",
    code_version="2",
    deps=["filtered_corpora", "target_model"],
    partitions_def=TARGETS,
    kinds={"numpy"},
    check_specs=[
        tokenizer_check_spec("tokenized_shards"),
        dg.AssetCheckSpec("shard_checksums", asset="tokenized_shards", blocking=True),
    ],
    description="The corpus in the target's tokenizer: EOS between documents, packed fixed-length sequences, checksummed shards, a document-level train/validation split.",
)
def tokenized_shards(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline
) -> dg.MaterializeResult:
    target = pipeline.resolve_target(context.partition_key)
    corpora = pipeline.store.latest("filtered_corpora", SHARED)
    cfg = pipeline.profile.settings("tokenized_shards").shards

    def build(out):
        index = tokenize_and_pack(
            corpora.path / "corpus.parquet",
            target.path,
            out,
            seq_len=cfg.seq_len,
            seqs_per_shard=cfg.seqs_per_shard,
            val_fraction=cfg.val_fraction,
            max_tokens=cfg.budgets(),
        )
        return {
            "tokens": index["tokens"],
            "documents": index["documents"],
            "shards": len(index["shards"]),
        }

    art = build_artifact(
        context,
        pipeline,
        target.key,
        config=pipeline.profile.version_config("tokenized_shards"),
        inputs={"filtered_corpora": corpora.data_version, "target_model": target.revision},
        build=build,
    )
    try:
        verify_shards(art.path)
        checksum = dg.AssetCheckResult(check_name="shard_checksums", passed=True)
    except ShardChecksumError as exc:
        checksum = dg.AssetCheckResult(
            check_name="shard_checksums", passed=False, description=str(exc)
        )
    tokens = art.metrics["tokens"]
    return result(
        context,
        art,
        {
            "target": target.name,
            "shards": art.metrics["shards"],
            "tokens": dg.MetadataValue.md(
                md_table([{"domain": d, **v} for d, v in tokens.items()])
            ),
            "train_tokens": sum(v["train"] for v in tokens.values()),
        },
        [
            tokenizer_check("tokenized_shards", art.path / "tokenizer", target.path, target.name),
            checksum,
        ],
    )

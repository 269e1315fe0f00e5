"""Data assets: `filtered_corpora` (target-independent) and `tokenized_shards` (per target)."""

import itertools
import json

import dagster as dg

from fastdraft_dag.assets.common import (
    build_artifact,
    result,
    tokenizer_check,
    tokenizer_check_spec,
)
from fastdraft_dag.filters import filter_and_dedup
from fastdraft_dag.packing import tokenize_and_pack
from fastdraft_dag.report import md_table
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.shards import ShardChecksumError, verify_shards
from fastdraft_dag.sources import iter_source
from fastdraft_dag.storage.tables import record_rows

SHARED = "shared"


@dg.asset(
    group_name="data",
    code_version="1",
    kinds={"duckdb", "parquet"},
    pool="duckdb_writer",
    description="Offline text and code normalized to records, quality-filtered and exact-deduplicated in DuckDB.",
)
def filtered_corpora(
    context: dg.AssetExecutionContext, pipeline: FastDraftPipeline
) -> dg.MaterializeResult:
    cfg = pipeline.profile.corpora

    def build(out):
        records = itertools.chain.from_iterable(
            iter_source(name, split="train", max_docs=cfg.max_docs_per_source)
            for name in cfg.sources
        )
        stats = filter_and_dedup(records, out)
        return {
            "sources": stats,
            "docs_kept": sum(s["docs_kept"] for s in stats),
            "bytes_kept": sum(s["bytes_kept"] for s in stats),
        }

    art = build_artifact(
        context,
        pipeline,
        SHARED,
        config=pipeline.profile.section("corpora"),
        inputs={},
        build=build,
    )
    stats = art.metrics["sources"]
    record_rows(
        pipeline.db_path,
        "corpus_stats",
        art.manifest["version"],
        [{**s, "dropped": json.dumps(s["dropped"])} for s in stats],
        context.run.run_id,
    )
    rows = [
        {k: v for k, v in s.items() if k != "dropped"} | {"dropped": sum(s["dropped"].values())}
        for s in stats
    ]
    return result(
        context,
        art,
        {
            "docs_kept": art.metrics["docs_kept"],
            "bytes_kept": art.metrics["bytes_kept"],
            "per_source": dg.MetadataValue.md(md_table(rows)),
            "drops_by_rule": dg.MetadataValue.json({s["source"]: s["dropped"] for s in stats}),
        },
    )


@dg.asset(
    group_name="data",
    code_version="1",
    deps=["filtered_corpora", "target_model"],
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
    target = pipeline.resolve_target()
    corpora = pipeline.store.latest("filtered_corpora", SHARED)
    cfg = pipeline.profile.shards

    def build(out):
        index = tokenize_and_pack(
            corpora.path / "corpus.parquet",
            target.path,
            out,
            seq_len=cfg.seq_len,
            seqs_per_shard=cfg.seqs_per_shard,
            val_fraction=cfg.val_fraction,
            max_tokens=cfg.max_tokens,
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
        config=pipeline.profile.section("shards"),
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

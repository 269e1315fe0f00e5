"""Build the filtered, deduplicated corpus: sources -> units -> rules -> exact and near dedup.

Two phases, both streaming, so peak memory does not grow with the corpus:

1. Per unit (a source, one of its files, or a chunk of its files), in parallel processes: records
   stream through Python once (reading, MinHash signatures) and on through DuckDB, which applies
   the quality rules row by row and writes `units/<unit>.parquet` with each document's drop reason.
   A finished unit is renamed into place, so a rerun after a failure skips it.
2. Across units, in DuckDB: exact duplicates by normalized hash, then near duplicates by LSH bands
   of the signatures, each verified against `DedupConfig.threshold`. The first document by
   (source, id) of each group is kept.

Outputs in `out_dir`:
    corpus.parquet   id, source, domain, text of kept documents, in unit order (sources in the
                     order given, files in order): a fixed order with no sort of the texts
    stats.parquet    per source: docs/bytes in and kept, `dropped` JSON {step: count}
    funnel.parquet   per source and step: stage (read/rule/dedup/kept), docs, bytes
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from fastdraft_dag.core.drops import Drops
from fastdraft_dag.core.files import atomic_path, write_text_atomic
from fastdraft_dag.core.procs import worker_pool
from fastdraft_dag.data import dedup, features
from fastdraft_dag.data.dedup import DedupConfig
from fastdraft_dag.data.filters import (
    FilterConfig,
    default_rules,
    drop_reason_sql,
    features_sql,
    rule_names,
    sql_str,
)
from fastdraft_dag.sources.readers import SKIP_REASONS
from fastdraft_dag.sources.specs import SourceSpec, Unit, iter_unit, units

EXACT_DUP, NEAR_DUP = "exact_dup", "near_dup"
BATCH = 128  # documents per Arrow batch: bounds the per-batch word and line lists


@dataclass(frozen=True)
class CorpusOptions:
    """How to run, not what to keep: none of this changes the output."""

    workers: int = 1
    memory_limit: str = "512MB"  # per DuckDB connection; above it DuckDB spills to disk
    files_per_unit: int = 400
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)


def _connect(
    scratch: Path, memory_limit: str, threads: int, persistent: bool = False
) -> duckdb.DuckDBPyConnection:
    """A scratch connection that keeps within `memory_limit`, spilling to `scratch` beyond it.

    `persistent`: tables live in a file in `scratch` rather than in memory, for phase 2, whose
    per-document tables grow with the corpus.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(scratch / "work.duckdb") if persistent else ":memory:")
    con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
    con.execute(f"SET temp_directory = {sql_str(str(scratch))}")
    con.execute(f"SET threads = {max(1, threads)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")  # tqdm over units instead
    return con


# ---------------------------------------------------------------- phase 1: one unit


def _schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [("id", pa.string()), ("source", pa.string()), ("domain", pa.string())]
        + [("text", pa.string()), ("sig", pa.list_(pa.uint32(), num_perm))]
        + list(features.COLUMNS)
    )


def _batches(records: Iterable[dict], config: DedupConfig) -> Iterator[pa.RecordBatch]:
    schema, it = _schema(config.num_perm), iter(records)
    while chunk := list(islice(it, BATCH)):
        sigs, words = features.doc_features([r["text"] for r in chunk], config)
        columns = {k: [r[k] for r in chunk] for k in ("id", "source", "domain", "text")}
        columns["sig"] = pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel()), config.num_perm)
        columns |= words
        yield pa.RecordBatch.from_pydict(columns, schema=schema)


def filter_unit(unit: Unit, out: Path, options: CorpusOptions, threads: int = 1) -> Path:
    """Rules and signatures for one unit, written atomically to `out` (+ `.skips.json`)."""
    skips: Counter[str] = Counter()
    failures: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from _batches(iter_unit(unit, "train", skips), options.dedup)
        except BaseException as e:  # DuckDB would wrap it; keep the reader's own error
            failures.append(e)
            raise

    reader = pa.RecordBatchReader.from_batches(_schema(options.dedup.num_perm), batches())
    # the parquet is renamed into place last: its presence means the unit is done
    with atomic_path(out, unique=False) as tmp:
        con = _connect(out.parent / f".{out.stem}.scratch", options.memory_limit, threads)
        try:
            con.register("incoming", reader)
            rules = default_rules(options.filters)
            reason = drop_reason_sql(rules)
            con.execute(
                f"""COPY (
                      SELECT id, source, domain, text, strlen(text) AS nbytes, {reason} AS reason,
                             norm_hash AS hash, sig
                      FROM ({features_sql("incoming", rules)})
                    ) TO {sql_str(str(tmp))} (FORMAT parquet, ROW_GROUP_SIZE 2048, ROW_GROUP_SIZE_BYTES '8MB')"""
            )
        except duckdb.Error:
            if failures:
                raise failures[0] from None
            raise
        finally:
            con.close()
            shutil.rmtree(out.parent / f".{out.stem}.scratch", ignore_errors=True)
        write_text_atomic(out.with_suffix(".skips.json"), json.dumps(dict(skips)), unique=False)
    return out


def _filter_unit_job(args: tuple[Unit, Path, CorpusOptions, int]) -> Path:
    return filter_unit(*args)


def run_units(plan: list[tuple[Unit, Path]], options: CorpusOptions) -> None:
    """Filter the units not yet done, fanning out over `options.workers` processes."""
    todo = [(u, p) for u, p in plan if not p.exists()]
    if not todo:
        return
    workers = max(1, min(options.workers, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [(u, p, options, threads) for u, p in todo]
    with tqdm(total=len(jobs), desc="filter units", unit="unit") as bar:
        if workers == 1:
            for job in jobs:
                _filter_unit_job(job)
                bar.update()
            return
        with worker_pool(workers) as pool:
            for _ in pool.map(_filter_unit_job, jobs):
                bar.update()


# ---------------------------------------------------------------- phase 2: across units


def mark_duplicates(con: duckdb.DuckDBPyConnection, config: DedupConfig) -> None:
    """Table `final`: every document with its reason (rule, exact_dup, near_dup or NULL)."""
    con.execute(
        f"""CREATE TABLE judged AS
            SELECT id, source, domain, nbytes, sig, row_number() OVER (ORDER BY source, id) - 1 AS ord,
                   CASE WHEN reason IS NOT NULL THEN reason
                        WHEN row_number() OVER (PARTITION BY reason IS NULL, hash
                                                ORDER BY source, id) > 1 THEN '{EXACT_DUP}'
                   END AS reason
            FROM docs"""
    )
    r, n = config.rows, config.num_perm
    con.execute(
        f"""CREATE TABLE bands AS
            SELECT ord, b, hash(sig[b * {r} + 1 : (b + 1) * {r}]) AS bh
            FROM judged, range({config.bands}) t(b) WHERE reason IS NULL"""
    )
    # Each bucket pairs its members with its first member only: enough to connect a group,
    # without the quadratic pair count of a boilerplate-heavy bucket.
    pairs = con.execute(
        f"""WITH buckets AS (SELECT ord, min(ord) OVER (PARTITION BY b, bh) AS head FROM bands),
                 cand AS (SELECT DISTINCT head, ord FROM buckets WHERE ord <> head)
            SELECT c.head, c.ord FROM cand c
            JOIN judged h ON h.ord = c.head JOIN judged o ON o.ord = c.ord
            WHERE len(list_filter(range(1, {n} + 1), lambda i: h.sig[i] = o.sig[i]))
                  >= {config.threshold} * {n}"""
    ).fetchnumpy()
    edges = np.stack([pairs["head"], pairs["ord"]], axis=1) if len(pairs["head"]) else []
    count = con.execute("SELECT count(*) FROM judged").fetchall()[0][0]
    roots = dedup.components(np.asarray(edges, dtype=np.int64).reshape(-1, 2), count)
    near = pa.table({"ord": np.nonzero(roots != np.arange(count))[0]})
    con.register("near", near)
    con.execute(
        f"""CREATE TABLE final AS
            SELECT j.id, j.source, j.domain, j.nbytes,
                   coalesce(j.reason, CASE WHEN n.ord IS NOT NULL THEN '{NEAR_DUP}' END) AS reason
            FROM judged j LEFT JOIN near n USING (ord)"""
    )
    con.unregister("near")


def _skips(paths: list[tuple[Path, str]]) -> dict[str, Counter[str]]:
    """Reader skips per source, from the units' `.skips.json` files."""
    out: dict[str, Counter[str]] = {}
    for path, source in paths:
        out.setdefault(source, Counter()).update(
            json.loads(path.with_suffix(".skips.json").read_text())
        )
    return out


def funnel_rows(
    con: duckdb.DuckDBPyConnection,
    skips: dict[str, Counter[str]],
    specs: list[SourceSpec],
    options: CorpusOptions,
) -> list[dict[str, Any]]:
    """One row per (source, step), every step listed even at zero, so runs line up."""
    counts = {
        (s, r): (n, b)
        for s, r, n, b in con.execute(
            "SELECT source, coalesce(reason, 'kept'), count(*), sum(nbytes) FROM final GROUP BY ALL"
        ).fetchall()
    }
    rows = []
    for spec in specs:
        steps = [("read", r) for r in SKIP_REASONS]
        steps += [("rule", name) for name in rule_names(options.filters, spec.domain)]
        steps += [("dedup", EXACT_DUP), ("dedup", NEAR_DUP), ("kept", "kept")]
        sk = skips.get(spec.name, Counter())
        for order, (stage, step) in enumerate(steps):
            docs, nbytes = (
                (sk[step], sk[f"{step}:bytes"])
                if stage == "read"
                else counts.get((spec.name, step), (0, 0))
            )
            rows.append(
                {
                    "source": spec.name,
                    "domain": spec.domain,
                    "step_order": order,
                    "stage": stage,
                    "step": step,
                    "docs": int(docs),
                    "bytes": int(nbytes or 0),
                }
            )
    return rows


def corpus_drops(funnel: list[dict[str, Any]]) -> Drops:
    """Documents dropped, summed over sources, by `<stage>:<step>` (`rule:min_chars`,
    `dedup:near_duplicate`, `read:binary`); the kept row is not a drop."""
    drops = Drops()
    for row in funnel:
        if row["stage"] != "kept":
            drops.add(f"{row['stage']}:{row['step']}", int(row["docs"]))
    return drops


def stats_from_funnel(funnel: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-source totals: docs/bytes in (everything read) and kept, drops by step."""
    stats: dict[str, dict[str, Any]] = {}
    for row in funnel:
        s = stats.setdefault(
            row["source"],
            {
                "source": row["source"],
                "domain": row["domain"],
                "docs_in": 0,
                "docs_kept": 0,
                "bytes_in": 0,
                "bytes_kept": 0,
                "dropped": {},
            },
        )
        s["docs_in"] += row["docs"]
        s["bytes_in"] += row["bytes"]
        if row["stage"] == "kept":
            s["docs_kept"], s["bytes_kept"] = row["docs"], row["bytes"]
        else:
            s["dropped"][row["step"]] = row["docs"]
    return list(stats.values())


def _check_unique_ids(con: duckdb.DuckDBPyConnection) -> None:
    dup = con.execute(
        "SELECT source, id FROM docs GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
    ).fetchall()
    if dup:
        dup = dup[0]
        raise ValueError(
            f"source {dup[0]!r}: record id {dup[1]!r} occurs more than once; ids must be unique"
        )


def _write_rows(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], path: Path) -> None:
    con.register("rows_", pa.Table.from_pylist(rows))
    con.execute(f"COPY rows_ TO {sql_str(str(path))} (FORMAT parquet)")
    con.unregister("rows_")


def build_corpus(
    specs: list[SourceSpec],
    out_dir: Path,
    options: CorpusOptions = CorpusOptions(),  # noqa: B008
) -> dict[str, Any]:
    """Filter and deduplicate `specs` into `out_dir`; returns {"stats", "funnel"}.

    Finished units in `out_dir/units` are reused, so pointing a rerun at the same directory (the
    artifact store's resumable partial directory) continues where a failed run stopped.
    """
    out_dir = Path(out_dir)
    unit_dir = out_dir / "units"
    unit_dir.mkdir(parents=True, exist_ok=True)
    plan = [
        (unit, unit_dir / f"{unit.label}.parquet")
        for spec in specs
        for unit in units(spec, options.files_per_unit)
    ]
    run_units(plan, options)
    con = _connect(out_dir / ".scratch", options.memory_limit, os.cpu_count() or 1, True)
    try:
        files = ", ".join(sql_str(str(p)) for _, p in plan)
        con.execute(f"CREATE VIEW docs AS SELECT * FROM read_parquet([{files}])")
        _check_unique_ids(con)
        mark_duplicates(con, options.dedup)
        # No ORDER BY: sorting the kept texts is the one step DuckDB could not keep within its
        # memory limit (out of memory at 1 GB of input under a 160 MB limit). One thread streams
        # the units in plan order through the join instead, so the output order is fixed.
        con.execute("SET threads = 1")
        con.execute(
            f"""COPY (SELECT d.id, d.source, d.domain, d.text FROM docs d
                      JOIN final f USING (id, source) WHERE f.reason IS NULL)
                TO {sql_str(str(out_dir / "corpus.parquet"))} (FORMAT parquet, ROW_GROUP_SIZE 1024, ROW_GROUP_SIZE_BYTES '8MB')"""
        )
        funnel = funnel_rows(con, _skips([(p, u.spec.name) for u, p in plan]), specs, options)
        stats = stats_from_funnel(funnel)
        _write_rows(con, funnel, out_dir / "funnel.parquet")
        _write_rows(
            con,
            [{**s, "dropped": json.dumps(s["dropped"])} for s in stats],
            out_dir / "stats.parquet",
        )
    finally:
        con.close()
        shutil.rmtree(out_dir / ".scratch", ignore_errors=True)
    shutil.rmtree(unit_dir)  # intermediate: the corpus and the funnel are the artifact
    return {"stats": stats, "funnel": funnel}

"""The project's DuckDB file: corpus stats, KD index and benchmark results with history.

DuckDB allows one writer at a time, so every write opens, writes and closes in one short
transaction (and Dagster runs that write share a pool of 1).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

SCHEMA = {
    "corpus_stats": """
        run_id VARCHAR, created_at TIMESTAMP, artifact_version VARCHAR, source VARCHAR,
        domain VARCHAR, docs_in BIGINT, docs_kept BIGINT, bytes_in BIGINT, bytes_kept BIGINT,
        dropped JSON""",
    "corpus_funnel": """
        run_id VARCHAR, created_at TIMESTAMP, artifact_version VARCHAR, source VARCHAR,
        domain VARCHAR, step_order INTEGER, stage VARCHAR, step VARCHAR, docs BIGINT, bytes BIGINT""",
    "kd_datasets": """
        run_id VARCHAR, created_at TIMESTAMP, target VARCHAR, artifact_version VARCHAR,
        task VARCHAR, rows BIGINT, prompt_tokens BIGINT, response_tokens BIGINT""",
    "benchmark_offline": """
        run_id VARCHAR, created_at TIMESTAMP, artifact_version VARCHAR, target VARCHAR,
        draft_version VARCHAR, task VARCHAR, k INTEGER, alpha_greedy DOUBLE, alpha_sampled DOUBLE, tau_iid DOUBLE, tau_sim DOUBLE,
        mbsu DOUBLE, r DOUBLE, n_prompts INTEGER, n_tokens INTEGER""",
    "benchmark_wallclock": """
        run_id VARCHAR, created_at TIMESTAMP, artifact_version VARCHAR, target VARCHAR,
        draft_version VARCHAR, draft_precision VARCHAR, target_precision VARCHAR, device VARCHAR, precision_hint VARCHAR,
        task VARCHAR, k INTEGER, max_new_tokens INTEGER, plain_tok_s DOUBLE, sd_tok_s DOUBLE,
        speedup DOUBLE, tau_measured DOUBLE, accepted_draft_tokens BIGINT, target_passes BIGINT,
        agreement DOUBLE, first_divergence INTEGER, divergence_margin DOUBLE, n_prompts INTEGER""",
}


def connect(db_path: Path) -> duckdb.DuckDBPyConnection:
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db_path))
    for table, columns in SCHEMA.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        # Additive migration: a newer schema adds columns, history from older runs stays.
        for column in _columns(table):
            con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}")
    return con


def _columns(table: str) -> list[str]:
    return [c.strip() for c in SCHEMA[table].replace("\n", " ").split(",")]


def record_rows(
    db_path: Path, table: str, artifact_version: str, rows: Sequence[dict[str, Any]], run_id: str
) -> int:
    """Insert an artifact's rows once, in one transaction; a no-op if they are already there.

    Called on every materialization, built or reused: a run that failed after building its
    artifact but before writing its rows gets them written by the next run, and a rerun never
    duplicates them. Rows are stamped with the run that wrote them and the time, for history.
    """
    if table not in SCHEMA:
        raise ValueError(f"table {table!r}: unknown (known: {', '.join(SCHEMA)})")
    columns = [c.split()[0] for c in _columns(table)]
    stamp = {
        "run_id": run_id,
        "created_at": datetime.datetime.now(),
        "artifact_version": artifact_version,
    }
    con = connect(db_path)
    try:
        con.execute("BEGIN")
        present = con.execute(
            f"SELECT count(*) FROM {table} WHERE artifact_version = ?", [artifact_version]
        ).fetchone()[0]
        if present or not rows:
            con.execute("ROLLBACK")
            return 0
        con.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [[{**row, **stamp}.get(c) for c in columns] for row in rows],
        )
        con.execute("COMMIT")
    finally:
        con.close()
    return len(rows)


def query(db_path: Path, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    con = connect(db_path)
    try:
        cur = con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()

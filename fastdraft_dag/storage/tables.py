"""The project's DuckDB file: corpus stats, KD index and benchmark results with history.

DuckDB allows one writer at a time, so every write opens, writes and closes in one short
transaction (and Dagster runs that write share a pool of 1).
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from fastdraft_dag.core.errors import InputError

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
        mbsu DOUBLE, r DOUBLE, n_prompts INTEGER, n_tokens INTEGER, precision VARCHAR,
        target_precision VARCHAR, run_kind VARCHAR""",
    "benchmark_wallclock": """
        run_id VARCHAR, created_at TIMESTAMP, artifact_version VARCHAR, target VARCHAR,
        draft_version VARCHAR, draft_precision VARCHAR, target_precision VARCHAR, device VARCHAR, precision_hint VARCHAR,
        task VARCHAR, k INTEGER, max_new_tokens INTEGER, plain_tok_s DOUBLE, sd_tok_s DOUBLE,
        speedup DOUBLE, tau_measured DOUBLE, accepted_draft_tokens BIGINT, target_passes BIGINT,
        agreement DOUBLE, first_divergence INTEGER, divergence_margin DOUBLE, n_prompts INTEGER,
        mode VARCHAR, draft VARCHAR, tokens BIGINT, tok_s DOUBLE, ttft_ms DOUBLE, tpot_ms DOUBLE,
        accepted_per_step DOUBLE, threads INTEGER, confidence_threshold DOUBLE,
        speedup_ci_low DOUBLE, speedup_ci_high DOUBLE, run_kind VARCHAR, plain_spread DOUBLE""",
}


# Which build of an artifact version wrote the rows (its manifest's built_at): a rebuild of the
# same version (a corrupt copy set aside) replaces them, a reuse leaves them.
SCHEMA = {table: f"{columns}, built_at VARCHAR" for table, columns in SCHEMA.items()}

LOCK_WAIT_SECONDS = 300.0
READ_WAIT_SECONDS = 10.0  # a report gives up sooner: it says so and the user tries again


class TableFileError(InputError):
    """The DuckDB file cannot be opened or read (corrupt, foreign, unwritable); names the file.

    Not transient: retrying the step fails the same way, so the asset layer fails at once.
    """


def _named(db_path: Path, exc: Exception) -> TableFileError:
    return TableFileError(f"DuckDB file {str(db_path)!r}: {exc}")


def _open(db_path: Path, wait: float, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting while another process holds it.

    DuckDB lets one process at a time open a file read-write; a second one fails at once with
    "Could not set lock". Runs outside the `duckdb_writer` pool (KD rows, benchmark rows, the CLI,
    a report) only hold it for a short transaction, so waiting for it is the right answer.
    """
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(db_path), read_only=read_only)
        except duckdb.Error as exc:
            locked = isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()
            if locked and time.monotonic() > deadline:
                raise TableFileError(
                    f"DuckDB file {str(db_path)!r} is held by another process (a run writing "
                    f"its rows?) and stayed so for {wait:.0f} s; try again when it is done"
                ) from exc
            if not locked:
                raise _named(db_path, exc) from exc
            time.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 1.0)


def connect(db_path: Path, wait: float = LOCK_WAIT_SECONDS) -> duckdb.DuckDBPyConnection:
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    con = _open(Path(db_path), wait)
    try:
        for table, columns in SCHEMA.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            # Additive migration: a newer schema adds columns, history from older runs stays.
            for column in _columns(table):
                con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}")
    except duckdb.Error as exc:
        con.close()
        raise _named(db_path, exc) from exc
    return con


def _columns(table: str) -> list[str]:
    return [c.strip() for c in SCHEMA[table].replace("\n", " ").split(",")]


def record_rows(
    db_path: Path,
    table: str,
    artifact_version: str,
    rows: Sequence[dict[str, Any]],
    run_id: str,
    built_at: str | None = None,
) -> int:
    """Insert an artifact's rows once, in one transaction; a no-op if this build's rows are
    already there.

    Called on every materialization, built or reused: a run that failed after building its
    artifact but before writing its rows gets them written by the next run, and a rerun never
    duplicates them. A rebuild of the same version (`built_at` differs from the rows') replaces
    the old build's rows, so the report and the history agree. Rows are stamped with the run
    that wrote them and the time, for history.
    """
    if table not in SCHEMA:
        raise ValueError(f"table {table!r}: unknown (known: {', '.join(SCHEMA)})")
    columns = [c.split()[0] for c in _columns(table)]
    stamp = {
        "run_id": run_id,
        "created_at": datetime.datetime.now(),
        "artifact_version": artifact_version,
        "built_at": built_at,
    }
    con = connect(db_path)
    try:
        con.execute("BEGIN")
        present, old_build = con.execute(
            f"SELECT count(*), any_value(built_at) FROM {table} WHERE artifact_version = ?",
            [artifact_version],
        ).fetchone()
        same_build = built_at is None or old_build is None or old_build == built_at
        if (present and same_build) or not rows:
            con.execute("ROLLBACK")
            return 0
        if present:  # this version was rebuilt: the old build's rows go
            con.execute(f"DELETE FROM {table} WHERE artifact_version = ?", [artifact_version])
        con.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [[{**row, **stamp}.get(c) for c in columns] for row in rows],
        )
        con.execute("COMMIT")
    except duckdb.Error as exc:
        raise _named(db_path, exc) from exc
    finally:
        con.close()
    return len(rows)


def query(
    db_path: Path, sql: str, params: Sequence[Any] = (), read_only: bool = False
) -> list[dict[str, Any]]:
    """Rows as dicts. `read_only` (reports) opens the file without writing to it, so a
    read-only root works, and gives up after READ_WAIT_SECONDS when a writer holds it."""
    con = _open(Path(db_path), READ_WAIT_SECONDS, True) if read_only else connect(db_path)
    try:
        cur = con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    except duckdb.Error as exc:
        raise _named(db_path, exc) from exc
    finally:
        con.close()


def previous_acceptance(
    db_path: Path, target: str, current_version: str, precision: str = "torch-fp32"
) -> tuple[str | None, dict[str, float]]:
    """alpha_greedy per task of the target's newest benchmark before `current_version`.

    "Previous" is the most recently written artifact version other than the current one, so a
    rerun that reuses the current artifact still compares against the run before it. Only rows
    of the draft at `precision` count; rows written before precisions were recorded (NULL) were
    all the PyTorch fp32 draft.
    """
    if not Path(db_path).exists():
        return None, {}
    rows = query(
        db_path,
        """
        WITH prev AS (
            SELECT artifact_version FROM benchmark_offline
            WHERE target = ? AND artifact_version <> ? AND coalesce(run_kind, 'graph') <> 'adhoc'
            GROUP BY artifact_version ORDER BY max(created_at) DESC LIMIT 1)
        SELECT b.artifact_version, b.task, avg(b.alpha_greedy) AS alpha_greedy
        FROM benchmark_offline b JOIN prev USING (artifact_version)
        WHERE coalesce(b.precision, ?) = ?
        GROUP BY b.artifact_version, b.task
        """,
        [target, current_version, precision, precision],
    )
    if not rows:
        return None, {}
    return rows[0]["artifact_version"], {r["task"]: r["alpha_greedy"] for r in rows}


def benchmark_history(db_path: Path, target: str, read_only: bool = False) -> list[dict[str, Any]]:
    """One row per graph benchmark of `target`, oldest first: when, which draft, its pooled
    greedy acceptance (PyTorch fp32 draft) and the pooled live speedups (best SD, best prompt
    lookup, the release's mode). What scheduled retraining should move; ad-hoc runs excluded."""
    if not Path(db_path).exists():
        return []
    tables = query(
        db_path,
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'benchmark_%'",
        read_only=read_only,
    )
    if {"benchmark_offline", "benchmark_wallclock"} - {t["table_name"] for t in tables}:
        return []  # no benchmark recorded in this file yet
    return query(
        db_path,
        """
        WITH runs AS (
            SELECT artifact_version, min(created_at) AS created_at, any_value(draft_version) AS draft_version
            FROM benchmark_offline
            WHERE target = ? AND coalesce(run_kind, 'graph') <> 'adhoc'
            GROUP BY artifact_version),
        acc AS (
            SELECT artifact_version, avg(alpha_greedy) AS alpha_greedy FROM benchmark_offline
            WHERE target = ? AND task = 'all' AND coalesce(precision, 'torch-fp32') = 'torch-fp32'
            GROUP BY artifact_version),
        live AS (
            SELECT artifact_version,
                   max(CASE WHEN mode = 'sd' THEN speedup END) AS sd_speedup,
                   max(CASE WHEN mode = 'prompt_lookup' THEN speedup END) AS lookup_speedup,
                   max(CASE WHEN mode = 'plain' THEN tok_s END) AS plain_tok_s
            FROM benchmark_wallclock WHERE target = ? AND task = 'all'
            GROUP BY artifact_version)
        SELECT r.created_at, r.artifact_version, r.draft_version, a.alpha_greedy,
               l.sd_speedup, l.lookup_speedup, l.plain_tok_s
        FROM runs r LEFT JOIN acc a USING (artifact_version) LEFT JOIN live l USING (artifact_version)
        ORDER BY r.created_at
        """,
        [target, target, target],
        read_only=read_only,
    )

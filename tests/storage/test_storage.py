"""The artifact store and the DuckDB tables: atomic, content-addressed, idempotent."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from fastdraft_dag.storage.artifacts import (
    ArtifactCorruptError,
    ArtifactStore,
    DiskFullError,
    ManifestError,
    read_artifact,
    verify_artifact,
    verify_root,
)
from fastdraft_dag.storage.tables import SCHEMA, TableFileError, connect, query, record_rows


def _build(store: ArtifactStore, text: str, config: dict | None = None, calls: list | None = None):
    def build(out: Path) -> dict:
        (out / "data.txt").write_text(text)
        if calls is not None:
            calls.append(out)
        return {"chars": len(text)}

    return store.build("a", "p", code_version="1", config=config or {}, inputs={}, build=build)


def test_build_writes_manifest_with_checksums_and_points_latest(tmp_path):
    store = ArtifactStore(tmp_path)
    art = _build(store, "hello")
    assert art.manifest["files"]["data.txt"] == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )
    assert art.metrics == {"chars": 5}
    assert store.latest("a", "p").path == art.path
    assert not art.reused


def test_same_inputs_are_reused_and_not_rebuilt(tmp_path):
    store, calls = ArtifactStore(tmp_path), []
    first = _build(store, "x", calls=calls)
    second = _build(store, "x", calls=calls)
    assert len(calls) == 1 and second.reused and second.path == first.path


def test_changed_config_is_a_new_version(tmp_path):
    store = ArtifactStore(tmp_path)
    a = _build(store, "x", {"n": 1})
    b = _build(store, "x", {"n": 2})
    assert a.path != b.path and store.latest("a", "p").path == b.path


def test_a_killed_builders_temporary_is_removed_by_the_next_build(tmp_path):
    """kill -9 skips the cleanup: the next builder of that version, holding its lock, removes
    the stale `.<version>.tmp-*` directory (reused or rebuilt alike)."""
    store = ArtifactStore(tmp_path)
    art = _build(store, "x")
    stale = art.path.with_name(f".{art.path.name}.tmp-deadbeef")
    (stale / "half").mkdir(parents=True)
    assert _build(store, "x").reused and not stale.exists()


def test_failed_build_leaves_previous_artifact_and_no_partial(tmp_path):
    store = ArtifactStore(tmp_path)
    good = _build(store, "good")

    def broken(out: Path) -> dict:
        (out / "data.txt").write_text("half")
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        store.build("a", "p", code_version="2", config={}, inputs={}, build=broken)
    assert store.latest("a", "p").path == good.path
    assert read_artifact(good.path).manifest["files"]
    assert [p.name for p in (tmp_path / "a" / "p").iterdir() if p.name.startswith(".")] == []


def test_resumable_build_keeps_partial_work_for_the_next_attempt(tmp_path):
    store, seen = ArtifactStore(tmp_path), []

    def flaky(out: Path) -> dict:
        log = out / "rows.txt"
        seen.append(log.read_text() if log.exists() else "")
        with open(log, "a") as f:
            f.write("row\n")
        if len(seen) == 1:
            raise RuntimeError("killed")
        return {}

    kwargs = dict(code_version="1", config={}, inputs={}, build=flaky, resumable=True)
    with pytest.raises(RuntimeError):
        store.build("g", "p", **kwargs)
    art = store.build("g", "p", **kwargs)
    assert seen == ["", "row\n"]
    assert (art.path / "rows.txt").read_text() == "row\nrow\n"


def test_latest_of_unbuilt_asset_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="'nothing'"):
        ArtifactStore(tmp_path).latest("nothing", "p")


def test_record_rows_is_idempotent_per_artifact_and_stamps_runs(tmp_path):
    db = tmp_path / "fd.duckdb"
    rows = [{"source": "s", "domain": "text", "docs_in": 3, "docs_kept": 2, "dropped": "{}"}]
    assert record_rows(db, "corpus_stats", "v1", rows, "run-1") == 1
    assert record_rows(db, "corpus_stats", "v1", rows, "run-2") == 0
    assert record_rows(db, "corpus_stats", "v2", rows, "run-3") == 1
    got = query(db, "SELECT artifact_version, run_id FROM corpus_stats ORDER BY run_id")
    assert got == [
        {"artifact_version": "v1", "run_id": "run-1"},
        {"artifact_version": "v2", "run_id": "run-3"},
    ]


def test_a_rebuild_of_the_same_version_replaces_its_rows(tmp_path):
    """A corrupt artifact rebuilt under the same version writes new figures: its rows replace
    the old build's (the report reads the new build, the history must agree); a reuse of the
    same build writes nothing."""
    db = tmp_path / "fd.duckdb"
    old = [{"source": "s", "domain": "text", "docs_in": 3, "docs_kept": 2, "dropped": "{}"}]
    new = [{**old[0], "docs_kept": 1}, {**old[0], "source": "t"}]
    assert record_rows(db, "corpus_stats", "v1", old, "run-1", built_at="t1") == 1
    assert record_rows(db, "corpus_stats", "v1", new, "run-2", built_at="t1") == 0
    assert record_rows(db, "corpus_stats", "v1", new, "run-3", built_at="t2") == 2
    got = query(db, "SELECT source, docs_kept, run_id, built_at FROM corpus_stats ORDER BY source")
    assert got == [
        {"source": "s", "docs_kept": 1, "run_id": "run-3", "built_at": "t2"},
        {"source": "t", "docs_kept": 2, "run_id": "run-3", "built_at": "t2"},
    ]


def test_unknown_table_is_named(tmp_path):
    with pytest.raises(ValueError, match="'nope'"):
        record_rows(tmp_path / "fd.duckdb", "nope", "v", [{}], "r")


def test_older_database_gains_new_columns_and_keeps_history(tmp_path):
    db = tmp_path / "fd.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE benchmark_offline (run_id VARCHAR, task VARCHAR)")
    con.execute("INSERT INTO benchmark_offline VALUES ('old', 'code')")
    con.close()
    connect(db).close()
    cols = {r["column_name"] for r in query(db, "DESCRIBE benchmark_offline")}
    assert {c.split()[0] for c in SCHEMA["benchmark_offline"].replace("\n", " ").split(",")} <= cols
    assert query(db, "SELECT run_id FROM benchmark_offline") == [{"run_id": "old"}]


def test_manifest_is_valid_json_on_disk(tmp_path):
    art = _build(ArtifactStore(tmp_path), "y")
    assert json.loads((art.path / "manifest.json").read_text())["data_version"] == art.data_version


# ---------------------------------------------------------------- crash safety


def test_truncated_manifest_is_named_and_the_artifact_rebuilt(tmp_path):
    store, calls, logs = ArtifactStore(tmp_path), [], []
    first = _build(store, "x", calls=calls)
    manifest = first.path / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(ManifestError, match=str(manifest)):
        read_artifact(first.path)

    def build(out: Path) -> dict:
        calls.append(out)
        (out / "data.txt").write_text("x")
        return {}

    again = store.build(
        "a", "p", code_version="1", config={}, inputs={}, build=build, log=logs.append
    )
    assert len(calls) == 2 and not again.reused and again.path == first.path
    assert [p.name for p in (tmp_path / "a" / "p").glob(f".{first.path.name}.bad-*")]
    assert "failed verification" in logs[0] and "manifest.json" in logs[0]


@pytest.mark.parametrize("level, consumed, caught", [
    ("sizes", (), False), ("consumed", ("*.txt",), True), ("consumed", ("*.bin",), False),
    ("all", (), True),
])  # fmt: skip
def test_same_size_corruption_is_caught_by_checksums_of_what_is_consumed(
    tmp_path, level, consumed, caught
):
    store = ArtifactStore(tmp_path, verify=level)
    art = _build(store, "hello")
    (art.path / "data.txt").write_text("jello")  # same size, other bytes
    assert bool(verify_artifact(art, level, consumed)) is caught
    calls: list = []

    def build(out: Path) -> dict:
        calls.append(out)
        (out / "data.txt").write_text("hello")
        return {}

    kw = dict(code_version="1", config={}, inputs={}, build=build, consumed=consumed)
    assert store.build("a", "p", **kw).reused is not caught
    assert len(calls) == int(caught)


def test_a_shorter_file_fails_latest_and_verify_root_naming_it(tmp_path):
    store = ArtifactStore(tmp_path)
    art = _build(store, "hello")
    (art.path / "data.txt").write_text("hell")
    with pytest.raises(ArtifactCorruptError, match="data.txt: 4 bytes, manifest says 5"):
        store.latest("a", "p")
    report = verify_root(tmp_path)
    assert list(report) == [str(art.path)] and "data.txt" in report[str(art.path)][0]


def test_second_builder_waits_for_the_first_and_reuses_its_result(tmp_path):
    """Two processes build the same version at once: one builds, the other reuses its result."""
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from fastdraft_dag.storage.artifacts import ArtifactStore

        def build(out):
            with open(out / "rows.jsonl", "a") as f:
                f.write(sys.argv[2] + "\\n")
            # Hold the lock until the other process is about to ask for it (it may start late).
            deadline = time.time() + 30
            while len(list(Path(sys.argv[1]).glob("started-*"))) < 2 and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            return {}

        (Path(sys.argv[1]) / f"started-{sys.argv[2]}").touch()
        art = ArtifactStore(Path(sys.argv[1])).build(
            "kd", "p", code_version="1", config={}, inputs={}, build=build, resumable=True,
            log=lambda m: print("WAIT", m, flush=True))
        print("REUSED" if art.reused else "BUILT", flush=True)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), name], stdout=subprocess.PIPE, text=True
        )
        for name in ("one", "two")
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(o.split()[-1] for o in outs) == ["BUILT", "REUSED"]
    assert any("WAIT" in o and "held by pid" in o for o in outs), outs
    rows = (ArtifactStore(tmp_path).latest("kd", "p").path / "rows.jsonl").read_text().split()
    assert len(rows) == 1


def test_disk_full_names_the_path_and_the_space_needed(tmp_path):
    def build(out: Path) -> dict:
        (out / "part.bin").write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        DiskFullError, match=f"no space left building a \\[p\\] in {tmp_path / 'a' / 'p'}.*MiB free"
    ):
        ArtifactStore(tmp_path).build("a", "p", code_version="1", config={}, inputs={}, build=build)


def test_corrupt_duckdb_file_is_named(tmp_path):
    db = tmp_path / "fd.duckdb"
    db.write_bytes(b"not a duckdb file" * 100)
    with pytest.raises(TableFileError, match=f"DuckDB file '{db}'"):
        connect(db, wait=1.0)
    with pytest.raises(TableFileError, match=f"DuckDB file '{db}'"):
        record_rows(db, "corpus_stats", "v", [{"source": "s"}], "r")


def test_benchmark_history_orders_graph_runs_and_leaves_out_adhoc(tmp_path: Path) -> None:
    from fastdraft_dag.storage.tables import benchmark_history, record_rows

    db = tmp_path / "f.duckdb"

    def bench(version: str, alpha: float, sd: float, kind: str | None = None) -> None:
        common = {"target": "t", "draft_version": f"d-{version}", "task": "all", "run_kind": kind}
        record_rows(db, "benchmark_offline", version, [
            {**common, "k": k, "alpha_greedy": alpha, "precision": "torch-fp32"} for k in (1, 3)
        ] + [{**common, "k": 1, "alpha_greedy": 0.99, "precision": "int4"}], "r")  # fmt: skip
        record_rows(db, "benchmark_wallclock", version, [
            {**common, "mode": "plain", "tok_s": 100.0, "speedup": 1.0},
            {**common, "mode": "sd", "k": 2, "tok_s": 100 * sd, "speedup": sd},
            {**common, "mode": "sd", "k": 3, "tok_s": 90 * sd, "speedup": 0.9 * sd},
            {**common, "mode": "prompt_lookup", "k": 3, "tok_s": 120.0, "speedup": 1.2},
        ], "r")  # fmt: skip

    bench("v1", 0.2, 0.8)
    bench("adhoc-x", 0.9, 3.0, "adhoc")
    bench("v2", 0.3, 1.1)
    rows = benchmark_history(db, "t")
    assert [r["artifact_version"] for r in rows] == ["v1", "v2"]
    assert [r["alpha_greedy"] for r in rows] == pytest.approx([0.2, 0.3])  # fp32 draft only
    assert [r["sd_speedup"] for r in rows] == pytest.approx([0.8, 1.1])  # the best k
    assert rows[0]["lookup_speedup"] == pytest.approx(1.2) and rows[0]["plain_tok_s"] == 100.0
    assert benchmark_history(db, "other") == [] and benchmark_history(tmp_path / "no.db", "t") == []


def test_reuse_checksums_the_shipped_release_folder(tmp_path):
    """The release folder is what users load: a reuse of benchmark_tables checks every file in
    it, not only results.json."""
    from fastdraft_dag.assets.common import CONSUMED

    store = ArtifactStore(tmp_path)

    def build(out: Path) -> dict:
        (out / "results.json").write_text("{}")
        (out / "release" / "draft-ir").mkdir(parents=True)
        (out / "release" / "draft-ir" / "openvino_model.bin").write_bytes(b"weights")
        return {}

    def run():
        return store.build("benchmark_tables", "p", code_version="1", config={}, inputs={},
                           build=build, consumed=CONSUMED["benchmark_tables"])  # fmt: skip

    art = run()
    (art.path / "release" / "draft-ir" / "openvino_model.bin").write_bytes(b"weightz")
    again = run()
    assert not again.reused and list(tmp_path.glob("benchmark_tables/p/.*.bad-*"))


def test_a_build_records_the_peak_memory_of_its_process_tree(tmp_path: Path) -> None:
    """The child (a trainer, an export) holds the memory: its peak lands in the manifest."""
    import subprocess
    import sys

    from fastdraft_dag.storage.artifacts import ArtifactStore

    def build(out: Path) -> dict:
        hold = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(1.5)"
        subprocess.run([sys.executable, "-c", hold], check=True)
        (out / "x.txt").write_text("x")
        return {}

    store = ArtifactStore(tmp_path)
    art = store.build("peak", "p", code_version="1", config={}, inputs={}, build=build)
    assert art.manifest["peak_rss_mib"] >= 300

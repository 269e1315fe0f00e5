"""core/files.py, core/jsonl.py, core/locks.py: the plumbing every stage writes and reads with."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from pathlib import Path

import pytest

from fastdraft_dag.core.files import (
    atomic_path,
    replace_dir,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)
from fastdraft_dag.core.jsonl import (
    MALFORMED,
    NOT_UTF8,
    TOO_LARGE,
    JsonlError,
    append_jsonl,
    parse_lines,
    read_jsonl,
    write_jsonl_atomic,
)
from fastdraft_dag.core.locks import exclusive_lock


def test_sha256_file_streams_the_same_digest(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > one read block
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    write_json_atomic(path, {"b": 1, "a": 2})
    before = path.read_text()
    assert before == '{\n  "a": 2,\n  "b": 1\n}'  # the manifests' format: sorted, indent 2
    with pytest.raises(TypeError), atomic_path(path) as tmp:
        tmp.write_text("half a fi")
        raise TypeError("the writer died")
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_writer_that_wrote_nothing_is_an_error_not_an_empty_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="left no file"), atomic_path(tmp_path / "x"):
        pass
    assert not (tmp_path / "x").exists()


def test_fixed_temporary_keeps_the_suffix_and_is_reused(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a.npz", unique=False) as tmp:
        assert tmp.name == ".a.npz.tmp.npz"
        tmp.write_bytes(b"x")
    write_text_atomic(tmp_path / "t.txt", "é\n")
    assert (tmp_path / "t.txt").read_bytes() == "é\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "t.txt"]


def test_replace_dir_swaps_a_finished_directory(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("old")
    (tmp_path / ".build").mkdir()
    (tmp_path / ".build" / "new").write_text("new")
    replace_dir(tmp_path / ".build", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new"]
    assert not (tmp_path / ".build").exists()


def test_bad_line_is_named_with_its_file_and_number(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    with pytest.raises(JsonlError, match=r"rows\.jsonl' line 4: malformed_row"):
        read_jsonl(path)
    assert read_jsonl(path, on_bad="count") == ([{"a": 1}, {"a": 2}], 1)
    with pytest.raises(ValueError, match="on_bad 'skip'"):
        read_jsonl(path, on_bad="skip")


def test_lines_split_at_newline_only_and_bytes_are_classified(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    write_jsonl_atomic(path, [{"t": "a\u2028b"}, {"t": "c"}])  # U+2028 stays raw (no escape)
    append_jsonl(path, [{"t": "d"}])
    assert read_jsonl(path)[0] == [{"t": "a\u2028b"}, {"t": "c"}, {"t": "d"}]
    lines = [b'{"t": 1}\n', b"\xff\xfe\n", b'{"t": "' + b"x" * 50 + b'"}\n', b"nope\n"]
    got = [(x.number, x.problem) for x in parse_lines(lines, "mem", max_bytes=40)]
    assert got == [(1, None), (2, NOT_UTF8), (3, TOO_LARGE), (4, MALFORMED)]


def _hold(path: str, started: multiprocessing.Event, seconds: float) -> None:
    with exclusive_lock(Path(path)):
        started.set()
        time.sleep(seconds)


def test_lock_serialises_two_processes_and_names_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "x.lock"
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(lock), started, 1.0))
    holder.start()
    try:
        assert started.wait(60)
        heard: list[str] = []
        t0 = time.monotonic()
        with exclusive_lock(lock, heard.append):
            waited = time.monotonic() - t0
        assert waited > 0.3  # blocked until the other process let go
        assert len(heard) == 1 and f"pid {holder.pid}@" in heard[0] and "waiting" in heard[0]
    finally:
        holder.join(30)
    assert holder.exitcode == 0

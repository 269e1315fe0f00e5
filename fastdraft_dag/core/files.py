"""Files written whole or not at all, and their SHA-256: one home for what every stage needs.

A reader (the next asset, a resumed run, the trainer) must never see half a file, so every write
goes to a temporary name in the same directory (same filesystem: the rename is atomic), is
flushed to disk, then renamed over the target; a failure removes the temporary and leaves the old
file as it was. Hashing streams (`hashlib.file_digest`), so a multi-GB GGUF or shard is never
read into memory whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, streamed."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def temp_name(path: Path, unique: bool = True) -> Path:
    """A hidden sibling of `path` that keeps its suffix (np.savez appends `.npz` to a name
    without it; other writers pick a format by the suffix).

    `unique` (the default) lets concurrent writers of one file (two builds pointing LATEST)
    never share a temporary. `unique=False` gives one fixed name, for files a single locked
    builder writes inside a resumable directory: a kill -9 leaves at most that one temporary,
    which the rerun overwrites, instead of one more stray file per kill that would end up in
    the finished artifact.
    """
    path = Path(path)
    tag = f"{uuid.uuid4().hex[:8]}.tmp" if unique else "tmp"
    return path.with_name(f".{path.name}.{tag}{path.suffix}")


@contextmanager
def atomic_path(path: Path, unique: bool = True) -> Iterator[Path]:
    """A temporary path (`temp_name`) for any writer (savefig, np.savez, a parquet writer, DuckDB
    COPY); when the block ends it is flushed to disk and renamed over `path`; on error it is
    removed and `path` is left as it was."""
    path = Path(path)
    tmp = temp_name(path, unique)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, unique: bool = True) -> None:
    """`data` at `path`, or (on any failure) the old file untouched."""
    with atomic_path(path, unique) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str, unique: bool = True) -> None:
    """`text` (UTF-8) at `path`, or (on any failure) the old file untouched."""
    write_bytes_atomic(path, text.encode("utf-8"), unique)


def write_json_atomic(
    path: Path,
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = True,
    default: Any = str,
    unique: bool = True,
) -> None:
    """`obj` as JSON at `path`. The defaults are the manifests' format (sorted keys, values
    JSON cannot hold as their str); callers that wrote another format name it, so the bytes of
    files inside artifacts (and so their checksums) stay what they were."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default)
    write_text_atomic(path, text, unique)


def replace_dir(tmp: Path, final: Path) -> Path:
    """Swap a finished build directory `tmp` in for `final` (an old `final` is removed first).

    Not atomic as a whole (rmtree then rename), which is why callers only do it for outputs
    they can rebuild; a reader sees the old directory, none, or the new one, never a half one.
    """
    final = Path(final)
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return final


def _fsync(path: Path) -> None:
    """Flush a written file to disk before it is renamed into place: after a power cut the
    rename must not point at a file whose bytes never reached the disk."""
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r}: the writer left no file to move into place")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Readers that turn files into corpus records: local folders, JSONL, parquet, Hugging Face datasets.

Every reader streams (one file, line or record batch at a time) so memory does not grow with the
corpus, and none of them crashes on one bad document: empty, binary, non-UTF-8, oversized and
malformed inputs are skipped and counted in `skips` under a reason name, which the corpus funnel
reports next to the quality rules. What cannot be skipped (a missing folder, a parquet file without
the named column) raises a `SourceError` that names the source and the file.

Records are `{"id", "source", "domain", "text"}` with ids unique within their source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastdraft_dag.core.errors import InputError
from fastdraft_dag.core.jsonl import MALFORMED, parse_lines

Record = dict[str, str]

# Reasons a reader skips an input; the funnel shows them as steps before the quality rules.
# "heldout": the ~2% of documents reserved for evaluation prompts (sources.is_heldout).
SKIP_REASONS = ("empty", "binary", "not_utf8", "too_large", "malformed_row", "heldout")
DEFAULT_MAX_BYTES = 8 << 20  # a single document above this is a data dump, not training text


class SourceError(InputError):
    """A source that is unknown, missing or unreadable; the message names the source and path."""


def record(source: str, domain: str, key: str, text: str) -> Record:
    return {"id": f"{source}/{key}", "source": source, "domain": domain, "text": text}


def skip(skips: Counter[str], reason: str, nbytes: int) -> None:
    """Count a skipped input and its size; `<reason>:bytes` keys carry the bytes to the funnel."""
    skips[reason] += 1
    skips[f"{reason}:bytes"] += nbytes


def decode_document(data: bytes, skips: Counter[str], max_bytes: int) -> str | None:
    """Text of one document, or None (counted) when it is not usable training text.

    Non-UTF-8 input is skipped rather than repaired: replacement characters would teach the
    draft to emit U+FFFD, and a wrong guess at a legacy encoding garbles it silently.
    """
    if len(data) > max_bytes:
        reason = "too_large"
    elif b"\x00" in data:
        reason = "binary"
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            reason = "not_utf8"
        else:
            if text.strip():
                return text
            reason = "empty"
    skip(skips, reason, len(data))
    return None


# ---------------------------------------------------------------- local folders


def list_local_files(
    root: Path, pattern: str, source: str, exclude: tuple[str, ...] = ()
) -> list[str]:
    """Relative paths under `root` matching `pattern`, sorted so "keep first" is reproducible."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"source {source!r}: folder {str(root)!r} does not exist")
    found = []
    for path in root.glob(pattern):
        rel = path.relative_to(root)
        if path.is_file() and not any(part in exclude for part in rel.parts):
            found.append(rel.as_posix())
    return sorted(found)


def read_local_files(
    root: Path,
    rels: list[str],
    domain: str,
    source: str,
    skips: Counter[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[Record]:
    """One record per file; a file is read whole, so oversized ones are skipped by size first."""
    skips = Counter() if skips is None else skips
    for rel in rels:
        path = Path(root) / rel
        try:
            size = path.stat().st_size
            data = b"" if size > max_bytes else path.read_bytes()
        except OSError as e:
            raise SourceError(f"source {source!r}: cannot read {str(path)!r}: {e}") from e
        if size > max_bytes:
            skip(skips, "too_large", size)
        elif (text := decode_document(data, skips, max_bytes)) is not None:
            yield record(source, domain, rel, text)


def iter_local_files(
    root: Path,
    pattern: str,
    domain: str,
    source: str,
    exclude: tuple[str, ...] = (),
    skips: Counter[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[Record]:
    """One record per file under `root` matching `pattern`."""
    rels = list_local_files(root, pattern, source, exclude)
    return read_local_files(root, rels, domain, source, skips, max_bytes)


# ---------------------------------------------------------------- JSONL and parquet


def expand_paths(pattern: str, source: str) -> list[str]:
    """Local paths, globs and fsspec URLs (s3://, gs://, https://, hf://) to a sorted file list."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs(pattern)
    found = sorted(fs.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    files = [f for f in found if fs.isfile(f)]
    if not files:
        raise SourceError(f"source {source!r}: no files match {pattern!r}")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [f if protocol == "file" or "://" in f else f"{protocol}://{f}" for f in files]


def _row_text(row: Any, text_column: str) -> str | None:
    value = row.get(text_column) if isinstance(row, dict) else None
    return value if isinstance(value, str) else None


def _checked_row(row: dict, spec: Any, skips: Counter[str]) -> str | None:
    """The row's text, or None (counted) when it is missing, empty or oversized."""
    text = _row_text(row, spec.text_column)
    if text is None:
        skip(skips, "malformed_row", 0)
    elif not text.strip():
        skip(skips, "empty", len(text))
    elif len(text) > spec.max_bytes:
        skip(skips, "too_large", len(text))
    else:
        return text
    return None


def _row_key(row: dict, id_column: str, fallback: str) -> str:
    value = row.get(id_column) if id_column else None
    return str(value) if value not in (None, "") else fallback


def read_jsonl(
    url: str,
    spec: Any,
    skips: Counter[str],
) -> Iterator[Record]:
    """Rows of one JSONL file (gzip/zstd by extension); a malformed line is skipped and counted."""
    import fsspec

    name = Path(url).name
    try:
        with fsspec.open(url, "rb", compression="infer") as f:
            for line in parse_lines(f, url, max_bytes=spec.max_bytes):
                if line.problem is not None:  # too_large, not_utf8, malformed_row
                    skip(skips, line.problem, len(line.raw))
                    continue
                text = _row_text(line.value, spec.text_column)
                if text is None:
                    skip(skips, MALFORMED, len(line.raw))
                elif not text.strip():
                    skip(skips, "empty", len(line.raw))
                else:
                    key = _row_key(line.value, spec.id_column, f"{name}:{line.number}")
                    yield record(spec.name, spec.domain, key, text)
    except (OSError, EOFError) as e:  # EOFError: a truncated gzip
        raise SourceError(f"source {spec.name!r}: cannot read {url!r}: {e}") from e


def check_parquet_column(url: str, spec: Any) -> None:
    """Fail before any work on a file that lacks the text column (metadata only, no rows read)."""
    import fsspec
    import pyarrow.parquet as pq

    try:
        with fsspec.open(url, "rb") as f:
            names = pq.ParquetFile(f).schema_arrow.names
    except Exception as e:  # pyarrow raises several types for a non-parquet file
        raise SourceError(
            f"source {spec.name!r}: {url!r} is not a readable parquet file: {e}"
        ) from e
    if spec.text_column not in names:
        raise SourceError(
            f"source {spec.name!r}: parquet file {url!r} has no column {spec.text_column!r} "
            f"(columns: {', '.join(names)}); set text_column"
        )


def read_parquet(url: str, spec: Any, skips: Counter[str]) -> Iterator[Record]:
    """Rows of one parquet file, a record batch at a time."""
    import fsspec
    import pyarrow.parquet as pq

    check_parquet_column(url, spec)
    name = Path(url).name
    with fsspec.open(url, "rb") as f:
        pf = pq.ParquetFile(f)
        columns = [spec.text_column] + (
            [spec.id_column] if spec.id_column in pf.schema_arrow.names else []
        )
        row_no = 0
        for batch in pf.iter_batches(batch_size=1024, columns=columns):
            for row in batch.to_pylist():
                row_no += 1
                if (text := _checked_row(row, spec, skips)) is not None:
                    key = _row_key(row, spec.id_column, f"{name}:{row_no}")
                    yield record(spec.name, spec.domain, key, text)


# ---------------------------------------------------------------- Hugging Face datasets


def read_hf(spec: Any, skips: Counter[str]) -> Iterator[Record]:
    """A hub dataset (or a builder such as "json" with data_files), streamed: never downloaded whole."""
    from datasets import load_dataset

    try:
        stream = load_dataset(
            spec.dataset,
            spec.subset or None,
            split=spec.split,
            streaming=True,
            data_files=list(spec.data_files) or None,
            data_dir=spec.data_dir or None,
        )
    except Exception as e:  # hub, network and builder errors all land here
        raise SourceError(f"source {spec.name!r}: cannot open dataset {spec.dataset!r}: {e}") from e
    columns = list(stream.features or {}) if stream.features else None
    if columns is not None and spec.text_column not in columns:
        raise SourceError(
            f"source {spec.name!r}: dataset {spec.dataset!r} has no column {spec.text_column!r} "
            f"(columns: {', '.join(columns)}); set text_column"
        )
    for i, row in enumerate(stream):
        if (text := _checked_row(row, spec, skips)) is not None:
            yield record(spec.name, spec.domain, _row_key(row, spec.id_column, f"{i:09d}"), text)

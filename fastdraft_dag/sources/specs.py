"""Corpus sources as declared in a profile, and the records they yield.

A `SourceSpec` is plain config (it goes into the artifact version): a `builtin` offline corpus
(`offline_corpora.py`), a folder of files matched by a glob, JSONL or parquet files (local paths,
globs or fsspec URLs), or a Hugging Face dataset streamed by name with a configurable text column.
A source splits into `units` (one per file for JSONL and parquet) so work can fan out across
processes and a finished unit survives a failure in another.

A deterministic ~2% of documents is held out (`is_heldout`): evaluation prompts are drawn from
them, so they must never reach training.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from itertools import islice
from pathlib import Path
from typing import Any

from fastdraft_dag.sources import readers as source_files
from fastdraft_dag.sources.builtin import BUILTINS
from fastdraft_dag.sources.readers import DEFAULT_MAX_BYTES, Record, SourceError

__all__ = [
    "SourceError",
    "SourceSpec",
    "Unit",
    "is_heldout",
    "iter_source",
    "iter_unit",
    "load_sources_file",
    "units",
]

HELDOUT_PER_MILLE = 20  # ~2% of documents
SPLITS = ("train", "heldout", "all")
KINDS = ("builtin", "files", "jsonl", "parquet", "hf")
DOMAINS = ("text", "code")
FILES_PER_UNIT = 400


@dataclass(frozen=True)
class SourceSpec:
    """One corpus. `path` is a folder (files), or a file, glob or fsspec URL (jsonl, parquet)."""

    name: str  # unique name; a builtin corpus's name for kind builtin
    kind: str = "builtin"  # builtin | files | jsonl | parquet | hf
    domain: str = ""  # builtin: the corpus's own
    path: str = ""  # files: a folder; jsonl, parquet: a file, glob or fsspec URL
    pattern: str = "**/*"  # files: glob under `path`
    exclude: tuple[str, ...] = ()  # files: path parts to leave out
    dataset: str = ""  # hf: hub id, or a builder ("json", "parquet") with data_files
    subset: str = ""  # hf: the dataset's configuration
    split: str = "train"  # hf: the split streamed
    data_files: tuple[str, ...] = ()  # hf: data files for a builder such as json or parquet
    data_dir: str = ""  # hf: data directory inside the dataset
    text_column: str = "text"  # jsonl, parquet, hf: the column holding the text
    id_column: str = ""  # jsonl, parquet, hf: the id column; '' = derived from the text
    max_docs: int | None = None  # per unit
    max_bytes: int = DEFAULT_MAX_BYTES  # larger documents are skipped and counted

    def __post_init__(self) -> None:
        where = f"source {self.name!r}"
        if self.kind not in KINDS:
            raise SourceError(f"{where}: kind {self.kind!r} is not one of {KINDS}")
        if self.kind == "builtin":
            if self.name not in BUILTINS:
                known = ", ".join(sorted(BUILTINS))
                raise SourceError(f"unknown source {self.name!r}; known sources: {known}")
            object.__setattr__(self, "domain", self.domain or BUILTINS[self.name].domain)
        if self.domain not in DOMAINS:
            raise SourceError(f"{where}: domain {self.domain!r} is not one of {DOMAINS}")
        if self.kind in ("files", "jsonl", "parquet") and not self.path:
            raise SourceError(f"{where}: kind {self.kind!r} needs a path")
        if self.kind == "hf" and not self.dataset:
            raise SourceError(f"{where}: kind 'hf' needs a dataset")

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | SourceSpec) -> SourceSpec:
        """A builtin name, a mapping from config (YAML/JSON), or a spec."""
        if isinstance(value, SourceSpec):
            return value
        if isinstance(value, str):
            return cls(name=value)
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise SourceError(f"source {value.get('name')!r}: unknown keys {sorted(unknown)}")
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        return cls(**args)


@dataclass(frozen=True)
class Unit:
    """A piece of one source that can be read on its own: the whole source or one of its files."""

    spec: SourceSpec
    file: str = ""  # jsonl / parquet: the one file
    files: tuple[str, ...] = ()  # folders: this unit's files, relative to the folder
    key: str = ""

    @property
    def label(self) -> str:
        return self.key or self.spec.name


def _folder(spec: SourceSpec) -> tuple[Path, str, tuple[str, ...]] | None:
    """(root, glob, exclude) for folder-shaped sources, None for the others."""
    if spec.kind == "files":
        return Path(spec.path), spec.pattern, spec.exclude
    builtin = BUILTINS.get(spec.name) if spec.kind == "builtin" else None
    if builtin is not None and builtin.read is None:
        return _locate(spec), builtin.pattern, builtin.exclude
    return None


def units(spec: SourceSpec, files_per_unit: int = FILES_PER_UNIT) -> list[Unit]:
    """The source's independent pieces: JSONL and parquet per file, folders in chunks of files."""
    if folder := _folder(spec):
        rels = source_files.list_local_files(folder[0], folder[1], spec.name, folder[2])
        chunks = [tuple(rels[i : i + files_per_unit]) for i in range(0, len(rels), files_per_unit)]
        return [Unit(spec, files=c, key=f"{spec.name}-{i:05d}") for i, c in enumerate(chunks)]
    if spec.kind in ("jsonl", "parquet"):
        files = source_files.expand_paths(spec.path, spec.name)
        if spec.kind == "parquet":
            for url in files:  # a missing column fails now, before any unit has run
                source_files.check_parquet_column(url, spec)
        return [Unit(spec, file=f, key=f"{spec.name}-{i:05d}") for i, f in enumerate(files)]
    if spec.kind == "builtin":
        _locate(spec)  # a missing package fails while planning, not mid-run
    return [Unit(spec)]


def _locate(spec: SourceSpec) -> Path:
    try:
        path = BUILTINS[spec.name].locate()
    except SourceError as e:
        raise SourceError(f"source {spec.name!r}: {e}") from e
    if not path.exists():
        raise SourceError(f"source {spec.name!r}: {str(path)!r} does not exist")
    return path


def _read(unit: Unit, skips: Counter[str]) -> Iterator[Record]:
    spec = unit.spec
    if folder := _folder(spec):
        return source_files.read_local_files(
            folder[0], list(unit.files), spec.domain, spec.name, skips, spec.max_bytes
        )
    if spec.kind == "builtin":
        path = _locate(spec)
        return _checked(spec.name, path, BUILTINS[spec.name].read(path))
    if spec.kind == "jsonl":
        return source_files.read_jsonl(unit.file, spec, skips)
    if spec.kind == "parquet":
        return source_files.read_parquet(unit.file, spec, skips)
    return source_files.read_hf(spec, skips)


def _checked(name: str, path: Path, records: Iterator[Record]) -> Iterator[Record]:
    """Turn a builtin reader's low-level errors into a SourceError naming the source and file."""
    import xml.etree.ElementTree as ET

    try:
        yield from records
    except SourceError:
        raise
    except (OSError, EOFError, ET.ParseError, ValueError, KeyError) as e:
        raise SourceError(f"source {name!r}: cannot read {str(path)!r}: {e}") from e


def load_sources_file(path: str | Path) -> tuple[SourceSpec, ...]:
    """Sources a user declares in a YAML or JSON file: a list of names or mappings."""
    import yaml  # JSON is YAML too

    path = Path(path)
    try:
        items = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SourceError(f"sources file {str(path)!r}: {e}") from e
    if isinstance(items, dict):
        items = items.get("sources")
    if not isinstance(items, list) or not items:
        raise SourceError(f"sources file {str(path)!r}: expected a non-empty list of sources")
    return tuple(SourceSpec.parse(item) for item in items)


def is_heldout(record_id: str) -> bool:
    """A stable hash bucket, independent of corpus order, so held-out docs stay held out forever."""
    digest = hashlib.sha256(f"heldout:{record_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < HELDOUT_PER_MILLE


def iter_unit(
    unit: Unit, split: str = "train", skips: Counter[str] | None = None
) -> Iterator[Record]:
    """Records of one unit: `train` drops held-out docs, `heldout` keeps only them, `all` both."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    skips = Counter() if skips is None else skips
    records = _read(unit, skips)
    if split != "all":
        records = _split(records, split == "heldout", skips)
    return islice(records, unit.spec.max_docs)


def _split(records: Iterator[Record], want_heldout: bool, skips: Counter[str]) -> Iterator[Record]:
    """Keep one side of the held-out split; count the other, so the funnel shows where docs went."""
    for r in records:
        if is_heldout(r["id"]) == want_heldout:
            yield r
        else:
            source_files.skip(
                skips, "heldout" if not want_heldout else "train", len(r["text"].encode())
            )


def iter_source(
    source: str | Mapping[str, Any] | SourceSpec,
    split: str = "train",
    max_docs: int | None = None,
    skips: Counter[str] | None = None,
) -> Iterator[Record]:
    """All records of a source, unit after unit, at most `max_docs` of them."""
    spec = SourceSpec.parse(source)
    chained = (r for unit in units(spec) for r in iter_unit(unit, split, skips))
    return islice(chained, max_docs)

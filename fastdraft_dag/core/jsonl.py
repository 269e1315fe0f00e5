"""JSON Lines, read and written one way everywhere: KD rows, prompt files, corpora, train logs.

One bad-line policy: blank lines are skipped; a line that is not JSON (or not UTF-8, or longer
than a limit) is either an error naming the file and its line number (`on_bad="raise"`: package
data, logs we wrote ourselves) or dropped and counted (`on_bad="count"`: user files and files a
killed writer may have torn, whose callers report the count). Lines split at "\n" only:
`str.splitlines` also breaks at U+2028 and kin, which `json.dumps(ensure_ascii=False)` leaves raw
inside strings, so a row holding one would read as two torn lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastdraft_dag.core.errors import InputError
from fastdraft_dag.core.files import write_text_atomic

ON_BAD = ("raise", "count")
# What a bad line is; the corpus readers count drops under these names.
TOO_LARGE, NOT_UTF8, MALFORMED = "too_large", "not_utf8", "malformed_row"


class JsonlError(InputError):
    """A line of a JSONL file is not JSON; the message names the file and the line number."""


@dataclass(frozen=True)
class JsonLine:
    """One non-blank line: its 1-based number in the file, the line as read (newline included)
    and its value, or the reason it has none (`problem`: TOO_LARGE, NOT_UTF8, MALFORMED)."""

    source: str
    number: int
    raw: str | bytes
    value: Any = None
    problem: str | None = None
    detail: str = ""

    def get(self) -> Any:
        """The value; a bad line raises JsonlError naming the file and the line."""
        if self.problem is not None:
            raise JsonlError(f"{self.source!r} line {self.number}: {self.problem} ({self.detail})")
        return self.value


def parse_lines(
    lines: Iterable[str | bytes], source: str, max_bytes: int | None = None
) -> Iterator[JsonLine]:
    """Every non-blank line of `lines` (a text or binary file, a list) as a JsonLine; bad lines
    are yielded with their problem, never raised, so each caller applies its policy."""
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if max_bytes is not None and len(raw) > max_bytes:
            yield JsonLine(source, number, raw, None, TOO_LARGE, f"{len(raw)} bytes > {max_bytes}")
            continue
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            yield JsonLine(source, number, raw, None, NOT_UTF8, str(exc))
            continue
        try:
            yield JsonLine(source, number, raw, json.loads(text))
        except json.JSONDecodeError as exc:
            yield JsonLine(source, number, raw, None, MALFORMED, str(exc))


def iter_jsonl(path: Path, errors: str = "strict") -> Iterator[JsonLine]:
    """The lines of a UTF-8 JSONL file, streamed (`errors="replace"` reads any bytes)."""
    with open(path, encoding="utf-8", errors=errors) as f:
        yield from parse_lines(f, str(path))


def read_jsonl(path: Path, on_bad: str = "raise", errors: str = "strict") -> tuple[list[Any], int]:
    """(values, number of bad lines dropped) of a JSONL file, under the policy `on_bad`."""
    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad {on_bad!r}: expected one of {ON_BAD}")
    values, bad = [], 0
    for line in iter_jsonl(path, errors):
        if line.problem is None:
            values.append(line.value)
        elif on_bad == "count":
            bad += 1
        else:
            line.get()
    return values, bad


def jsonl_text(rows: Iterable[Any], ensure_ascii: bool = False) -> str:
    """Rows as JSONL text, one line each, every line ending in a newline."""
    return "".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in rows)


def append_jsonl(path: Path, rows: Iterable[Any], ensure_ascii: bool = False) -> None:
    """Append rows in one write and flush, so a kill tears at most the last line (which
    `on_bad="count"` readers drop and the next writer cuts)."""
    text = jsonl_text(rows, ensure_ascii)
    if text:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()


def write_jsonl_atomic(
    path: Path, rows: Iterable[Any], ensure_ascii: bool = False, unique: bool = True
) -> None:
    """Replace the file with exactly `rows` (temp file, then rename; `unique`: see
    `core.files.temp_name`)."""
    write_text_atomic(path, jsonl_text(rows, ensure_ascii), unique)

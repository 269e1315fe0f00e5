"""Offline corpus sources: record shape, stable ids, held-out split, errors naming the source."""

from __future__ import annotations

import bz2
import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastdraft_dag.sources import builtin as offline_corpora
from fastdraft_dag.sources.builtin import BUILTINS as SOURCES
from fastdraft_dag.sources.builtin import Builtin, split_sections, strip_wiki_markup
from fastdraft_dag.sources.readers import iter_local_files
from fastdraft_dag.sources.specs import (
    SourceError,
    SourceSpec,
    is_heldout,
    iter_source,
    load_sources_file,
    units,
)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_yields_records(name: str) -> None:
    records = list(iter_source(name, max_docs=3))
    assert len(records) == 3
    for r in records:
        assert set(r) == {"id", "source", "domain", "text"}
        assert r["source"] == name and r["id"].startswith(f"{name}/")
        assert r["domain"] == SOURCES[name].domain and r["text"].strip()
        assert not is_heldout(r["id"])


def test_code_and_prose_domains() -> None:
    assert SOURCES["python_stdlib"].domain == "code"
    assert {SOURCES[n].domain for n in ("wikipedia", "shakespeare", "kjv_bible")} == {"text"}


def test_heldout_split_is_disjoint_and_complete() -> None:
    all_ids = [r["id"] for r in iter_source("kjv_bible", "all")]
    train = {r["id"] for r in iter_source("kjv_bible", "train")}
    heldout = {r["id"] for r in iter_source("kjv_bible", "heldout")}
    assert len(all_ids) == len(set(all_ids)) == 1189  # chapters of the KJV
    assert not train & heldout and train | heldout == set(all_ids)
    assert 0.005 < len(heldout) / len(all_ids) < 0.05


def test_is_heldout_is_deterministic_and_about_two_percent() -> None:
    ids = [f"x/{i}" for i in range(20_000)]
    first = [is_heldout(i) for i in ids]
    assert first == [is_heldout(i) for i in ids]
    assert 0.015 < sum(first) / len(ids) < 0.025


def test_kjv_one_record_per_chapter() -> None:
    first = next(iter_source("kjv_bible", "all"))
    assert first["id"] == "kjv_bible/Genesis:1"
    assert first["text"].startswith("Genesis 1\n\n1 In the beginning God created")
    assert "\n31 And God saw every thing" in first["text"]


def test_wikipedia_articles_are_plain_prose() -> None:
    records = list(iter_source("wikipedia", "all", max_docs=20))
    assert all(not r["id"].startswith("wikipedia/Talk:") for r in records)
    text = "\n".join(r["text"] for r in records)
    for markup in ("{{", "[[", "<ref", "'''", "{|"):
        assert text.count(markup) < 5, markup


def test_strip_wiki_markup_known_answer() -> None:
    wikitext = (
        "{{Infobox|name={{nested}}}}'''Foo''' is a [[bar (thing)|bar]] in [[Baz]].<ref>cite</ref>\n"
        "== History ==\n{|\n| a || b\n|}\n[[File:x.png|thumb|a [[pic]]]]"
        "Made by [http://x.org Xorg].[[Category:Things]]"
    )
    assert strip_wiki_markup(wikitext) == "Foo is a bar in Baz.\nHistory\n\nMade by Xorg."


def test_split_sections_carries_bodiless_headings() -> None:
    play = "# Play\n\n## ACT I\n\n### SCENE I. A room.\n\nHello.\n\n### SCENE II.\n\nBye.\n"
    assert split_sections(play) == [
        "# Play\n\n## ACT I\n\n### SCENE I. A room.\n\nHello.",
        "### SCENE II.\n\nBye.",
    ]


def test_iter_local_files_skips_and_counts_bad_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub" / "b.txt").write_text("caf\u00e9 ok")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 ok")  # not UTF-8: skipped, counted
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "bin.txt").write_bytes(b"abc\x00def")
    (tmp_path / "big.txt").write_text("x" * 101)
    (tmp_path / "c.md").write_text("not matched")
    skips: Counter[str] = Counter()
    records = list(
        iter_local_files(tmp_path, "**/*.txt", "text", "local", skips=skips, max_bytes=100)
    )
    assert [r["id"] for r in records] == ["local/a.txt", "local/sub/b.txt"]
    assert records[1]["text"] == "caf\u00e9 ok" and records[1]["domain"] == "text"
    assert {k: v for k, v in skips.items() if ":" not in k} == {
        "not_utf8": 1,
        "empty": 1,
        "binary": 1,
        "too_large": 1,
    }
    assert skips["too_large:bytes"] == 101


def test_iter_local_files_missing_root(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"'mine'.*nope"):
        list(iter_local_files(tmp_path / "nope", "*.txt", "text", "mine"))


def test_unknown_source_lists_known_ones() -> None:
    with pytest.raises(SourceError, match=r"'nope'.*kjv_bible.*wikipedia"):
        iter_source("nope")


def test_missing_source_names_source_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone.jsonl"
    monkeypatch.setitem(SOURCES, "kjv_bible", Builtin("kjv_bible", "text", lambda: gone, print))
    with pytest.raises(SourceError, match=r"'kjv_bible'.*gone\.jsonl"):
        iter_source("kjv_bible")


def test_unreadable_source_names_source_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "dump.xml.bz2"
    broken.write_bytes(bz2.compress(b"<mediawiki><page><title>A</title>")[:-10])
    source = Builtin("wikipedia", "text", lambda: broken, offline_corpora.read_wikipedia)
    monkeypatch.setitem(SOURCES, "wikipedia", source)
    with pytest.raises(SourceError, match=r"'wikipedia'.*dump\.xml\.bz2"):
        list(iter_source("wikipedia"))


def test_jsonl_source_reads_globs_gzip_and_counts_bad_rows(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(
        b'{"id": "x", "body": "first"}\n\n{"id": "y", "body": "second"}\n'
        b'{"id": "z", "body": 3}\nnot json\n{"id": "w", "body": "caf\xe9"}\n{"id": "v", "body": " "}\n'
    )
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": "u", "body": "third"}) + "\n")
    spec = SourceSpec(
        name="j",
        kind="jsonl",
        domain="text",
        path=str(tmp_path / "*.jsonl*"),
        text_column="body",
        id_column="id",
    )
    assert len(units(spec)) == 2
    skips: Counter[str] = Counter()
    records = list(iter_source(spec, "all", skips=skips))
    assert [(r["id"], r["text"]) for r in records] == [
        ("j/x", "first"),
        ("j/y", "second"),
        ("j/u", "third"),
    ]
    assert (skips["malformed_row"], skips["not_utf8"], skips["empty"]) == (2, 1, 1)


def test_parquet_source_and_missing_column(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"content": ["def f(): pass", None], "path": ["a.py", "b.py"]}),
        tmp_path / "c.parquet",
    )
    spec = SourceSpec(
        name="p",
        kind="parquet",
        domain="code",
        path=str(tmp_path / "c.parquet"),
        text_column="content",
        id_column="path",
    )
    skips: Counter[str] = Counter()
    assert [r["id"] for r in iter_source(spec, "all", skips=skips)] == ["p/a.py"]
    assert skips["malformed_row"] == 1
    wrong = SourceSpec(name="p", kind="parquet", domain="code", path=str(tmp_path / "c.parquet"))
    with pytest.raises(SourceError, match=r"'p'.*c\.parquet.*no column 'text'.*content, path"):
        iter_source(wrong)


def test_hf_source_streams_a_local_builder(tmp_path: Path) -> None:
    """The hub path runs through `datasets.load_dataset(streaming=True)`; offline, a builder."""
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "streamed row", "id": 7}) + "\n")
    spec = SourceSpec(
        name="h",
        kind="hf",
        domain="text",
        dataset="json",
        data_files=(str(tmp_path / "d.jsonl"),),
        id_column="id",
    )
    assert [(r["id"], r["text"]) for r in iter_source(spec, "all")] == [("h/7", "streamed row")]
    wrong = SourceSpec(
        name="h",
        kind="hf",
        domain="text",
        dataset="json",
        data_files=(str(tmp_path / "d.jsonl"),),
        text_column="content",
    )
    with pytest.raises(SourceError, match=r"'h'.*no column 'content'"):
        list(iter_source(wrong, "all"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "kind": "ftp"}, "kind 'ftp'"),
        ({"name": "x", "kind": "jsonl", "domain": "text"}, "needs a path"),
        ({"name": "x", "kind": "hf", "domain": "text"}, "needs a dataset"),
        ({"name": "x", "kind": "files", "domain": "poetry", "path": "."}, "domain 'poetry'"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        SourceSpec(**kwargs)


def test_sources_file(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n  - kjv_bible\n  - {name: mine, kind: files, domain: code, path: /src}\n"
    )
    specs = load_sources_file(path)
    assert [s.name for s in specs] == ["kjv_bible", "mine"] and specs[1].domain == "code"
    path.write_text("- {name: mine, kind: files, colour: red}\n")
    with pytest.raises(SourceError, match="unknown keys"):
        load_sources_file(path)

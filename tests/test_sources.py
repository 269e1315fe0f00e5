"""Offline corpus sources: record shape, stable ids, held-out split, errors naming the source."""

from __future__ import annotations

import bz2
from pathlib import Path

import pytest

from fastdraft_dag import sources
from fastdraft_dag.sources import (
    SOURCES,
    Source,
    SourceError,
    is_heldout,
    iter_local_files,
    iter_source,
    split_sections,
    strip_wiki_markup,
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


def test_iter_local_files_skips_empty_and_binary(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub" / "b.txt").write_bytes(b"caf\xe9 ok")  # not utf-8: replaced, kept
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "bin.txt").write_bytes(b"abc\x00def")
    (tmp_path / "c.md").write_text("not matched")
    records = list(iter_local_files(tmp_path, "**/*.txt", "text", "local"))
    assert [r["id"] for r in records] == ["local/a.txt", "local/sub/b.txt"]
    assert records[1]["text"] == "caf\ufffd ok" and records[1]["domain"] == "text"


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
    monkeypatch.setitem(SOURCES, "kjv_bible", Source("kjv_bible", "text", lambda: gone, None))
    with pytest.raises(SourceError, match=r"'kjv_bible'.*gone\.jsonl"):
        iter_source("kjv_bible")


def test_unreadable_source_names_source_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "dump.xml.bz2"
    broken.write_bytes(bz2.compress(b"<mediawiki><page><title>A</title>")[:-10])
    source = Source("wikipedia", "text", lambda: broken, sources.read_wikipedia)
    monkeypatch.setitem(SOURCES, "wikipedia", source)
    with pytest.raises(SourceError, match=r"'wikipedia'.*dump\.xml\.bz2"):
        list(iter_source("wikipedia"))

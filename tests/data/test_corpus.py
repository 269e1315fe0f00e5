"""The corpus build end to end on real text: planted duplicates, bad inputs, funnel, resume, memory."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastdraft_dag.data.corpus import CorpusOptions, build_corpus
from fastdraft_dag.sources.specs import SourceError, SourceSpec, iter_source

OPTIONS = CorpusOptions(workers=2, files_per_unit=4)


def edit(text: str, every: int = 40) -> str:
    """A near duplicate: every `every`-th word replaced."""
    words = text.split(" ")
    return " ".join("CHANGED" if i % every == 7 else w for i, w in enumerate(words))


@pytest.fixture(scope="module")
def real() -> dict[str, list[dict]]:
    return {
        "text": list(iter_source("kjv_bible", max_docs=30)),
        "code": [r for r in iter_source("python_stdlib", max_docs=60) if len(r["text"]) > 3000][:8],
    }


def write_jsonl(path: Path, rows: list, raw_lines: list[bytes] = ()) -> Path:
    with open(path, "wb") as f:
        for row in rows:
            f.write(json.dumps(row).encode() + b"\n")
        for line in raw_lines:
            f.write(line + b"\n")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, real: dict) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("corpus")
    chapters = real["text"]
    rows = [{"id": r["id"], "text": r["text"]} for r in chapters]
    rows += [
        {"id": "zz-exact-copy", "text": "  " + chapters[3]["text"].upper() + "\n\n"},
        {"id": "zz-near-copy", "text": edit(chapters[5]["text"])},
        {"id": "blank", "text": "   "},
        {"id": "no-text", "body": "wrong column"},
    ]
    raw = [b'{"id": "broken", "text": "unterminated', b'{"id": "latin1", "text": "caf\xe9"}']
    write_jsonl(root / "a.jsonl", rows[:20])
    write_jsonl(root / "b.jsonl", rows[20:], raw)

    code = root / "code"
    (code / "pkg").mkdir(parents=True)
    for i, r in enumerate(real["code"]):
        (code / "pkg" / f"m{i}.py").write_text(r["text"])
    (code / "pkg" / "near.py").write_text(edit(real["code"][0]["text"], 60))
    (code / "pkg" / "latin1.py").write_bytes("# caf\xe9\n".encode("latin-1") + b"x = 1\n" * 50)
    (code / "pkg" / "empty.py").write_text("\n\n")
    (code / "pkg" / "blob.py").write_bytes(b"\x00\x01binary" * 100)
    (code / "pkg" / "oneline.py").write_text("x = [" + "1, " * 600_000 + "]")  # 1.8 MB, one line
    (code / "pkg" / "huge.py").write_text("y = 0\n" * 400_000)  # 2.4 MB: over max_bytes
    out = root / "out"
    return out, build_corpus(_specs(root), out, OPTIONS)


def _specs(root: Path) -> list[SourceSpec]:
    return [
        SourceSpec(
            name="chapters", kind="jsonl", domain="text", path=str(root / "*.jsonl"), id_column="id"
        ),
        SourceSpec(
            name="mycode",
            kind="files",
            domain="code",
            path=str(root / "code"),
            pattern="**/*.py",
            max_bytes=2_000_000,
        ),
    ]


def test_corpus_order_is_fixed_across_builds(built: tuple[Path, dict]) -> None:
    """The kept texts are never sorted (bounded memory), yet two builds write the same order."""
    out, _ = built
    again = out.parent / "again"
    build_corpus(_specs(out.parent), again, CorpusOptions(workers=1, memory_limit="160MB"))
    first = pq.read_table(out / "corpus.parquet").column("id").to_pylist()
    assert pq.read_table(again / "corpus.parquet").column("id").to_pylist() == first


def funnel_of(result: dict, source: str) -> dict[str, int]:
    return {r["step"]: r["docs"] for r in result["funnel"] if r["source"] == source}


def test_planted_duplicates_are_dropped(built: tuple[Path, dict]) -> None:
    out, result = built
    text, code = funnel_of(result, "chapters"), funnel_of(result, "mycode")
    assert text["exact_dup"] == 1 and text["near_dup"] == 1
    assert code["near_dup"] == 1 and code["exact_dup"] == 0
    ids = set(pq.read_table(out / "corpus.parquet", columns=["id"]).column("id").to_pylist())
    assert "chapters/zz-exact-copy" not in ids and "chapters/zz-near-copy" not in ids
    assert "mycode/pkg/near.py" not in ids and "mycode/pkg/m0.py" in ids  # first by id is kept


def test_bad_inputs_are_skipped_and_counted(built: tuple[Path, dict]) -> None:
    _, result = built
    text, code = funnel_of(result, "chapters"), funnel_of(result, "mycode")
    assert text["malformed_row"] == 2 and text["empty"] == 1 and text["not_utf8"] == 1
    assert code["not_utf8"] == 1 and code["empty"] == 1 and code["binary"] == 1
    assert code["too_large"] == 1
    assert code["max_chars"] == 1  # the 1.8 MB single line: read, then dropped by a rule


def test_funnel_adds_up_and_matches_corpus(built: tuple[Path, dict]) -> None:
    out, result = built
    corpus = pq.read_table(out / "corpus.parquet")
    assert corpus.column_names == ["id", "source", "domain", "text"]
    for s in result["stats"]:
        assert s["docs_in"] == s["docs_kept"] + sum(s["dropped"].values())
        kept = [r for r in corpus.to_pylist() if r["source"] == s["source"]]
        assert len(kept) == s["docs_kept"]
        assert sum(len(r["text"].encode()) for r in kept) == s["bytes_kept"]
    sources = corpus.column("source").to_pylist()
    blocks = [s for i, s in enumerate(sources) if i == 0 or s != sources[i - 1]]
    assert len(blocks) == len(set(blocks)), "each source's documents form one block"
    funnel = pq.read_table(out / "funnel.parquet").to_pylist()
    assert funnel == result["funnel"]
    assert sorted(p.name for p in out.iterdir()) == [
        "corpus.parquet",
        "funnel.parquet",
        "stats.parquet",
    ]


def test_parquet_without_column_fails_before_any_work(tmp_path: Path) -> None:
    pq.write_table(pa.table({"content": ["x" * 300]}), tmp_path / "a.parquet")
    spec = SourceSpec(name="pq", kind="parquet", domain="code", path=str(tmp_path / "*.parquet"))
    with pytest.raises(SourceError, match=r"'pq'.*a\.parquet.*no column 'text'.*content"):
        build_corpus([spec], tmp_path / "out")
    assert not list((tmp_path / "out" / "units").glob("*.parquet"))
    ok = SourceSpec(
        name="pq",
        kind="parquet",
        domain="code",
        path=str(tmp_path / "a.parquet"),
        text_column="content",
    )
    assert [r["text"] for r in iter_source(ok, "all")] == ["x" * 300]


def test_failed_unit_keeps_finished_units_and_resumes(tmp_path: Path, real: dict) -> None:
    rows = [{"id": r["id"], "text": r["text"]} for r in real["text"][:11]]
    write_jsonl(tmp_path / "a.jsonl", rows[:10])
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as f:
        f.write(b"".join(json.dumps(r).encode() + b"\n" for r in rows[10:]))
    (tmp_path / "b.jsonl.gz").write_bytes((tmp_path / "b.jsonl.gz").read_bytes()[:-12])  # truncated
    spec = SourceSpec(name="c", kind="jsonl", domain="text", path=str(tmp_path / "*.jsonl*"))
    out = tmp_path / "out"
    with pytest.raises(SourceError, match=r"'c'.*b\.jsonl\.gz"):
        build_corpus([spec], out, CorpusOptions(workers=1))
    done = out / "units" / "c-00000.parquet"
    assert done.exists() and not (out / "units" / "c-00001.parquet").exists()
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as f:  # the user fixes the file
        f.write(json.dumps(rows[10]).encode() + b"\n")
    write_jsonl(tmp_path / "a.jsonl", rows[:1])  # a rebuilt first unit would now keep one doc
    result = build_corpus([spec], out, CorpusOptions(workers=1))
    assert result["stats"][0]["docs_kept"] == 11  # 10 from the finished unit, reused, + 1


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "a.jsonl", [{"id": "same", "text": "a" * 300}, {"id": "same", "text": "b" * 300}]
    )
    spec = SourceSpec(
        name="s", kind="jsonl", domain="text", path=str(tmp_path / "a.jsonl"), id_column="id"
    )
    with pytest.raises(ValueError, match="'s'.*s/same"):
        build_corpus([spec], tmp_path / "out")


RSS_CHILD = """
import json, sys
from fastdraft_dag.data.corpus import CorpusOptions, build_corpus
from fastdraft_dag.sources.specs import SourceSpec
spec = SourceSpec(name="dump", kind="jsonl", domain="text", path=sys.argv[1])
build_corpus([spec], sys.argv[2], CorpusOptions(workers=1, memory_limit="160MB"))
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(int(hwm.split()[1]) // 1024)
"""


def test_peak_memory_stays_flat_when_input_doubles(tmp_path: Path) -> None:
    docs = list(iter_source("kjv_bible")) + list(iter_source("wikipedia"))
    peaks, sizes = [], []
    for copies in (6, 18):  # 40 MB and 120 MB, both well above DuckDB's memory limit
        path = tmp_path / f"x{copies}" / "dump.jsonl"
        path.parent.mkdir()
        write_jsonl(path, [{"text": f"{c} {d['text']}"} for c in range(copies) for d in docs])
        sizes.append(path.stat().st_size / 2**20)
        cmd = [sys.executable, "-c", RSS_CHILD, str(path), str(path.parent / "out")]
        peaks.append(int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    # Holding the input would add at least the extra 80 MB; streaming adds noise (~20 MB).
    assert peaks[1] - peaks[0] < 0.4 * (sizes[1] - sizes[0]), (peaks, sizes)


def test_corpus_drops_sum_sources_by_stage_and_step() -> None:
    from fastdraft_dag.data.corpus import corpus_drops

    funnel = [
        {"source": "a", "stage": "read", "step": "binary", "docs": 1},
        {"source": "a", "stage": "rule", "step": "min_chars", "docs": 4},
        {"source": "b", "stage": "rule", "step": "min_chars", "docs": 2},
        {"source": "b", "stage": "dedup", "step": "exact_duplicate", "docs": 0},
        {"source": "b", "stage": "kept", "step": "kept", "docs": 50},
    ]
    assert corpus_drops(funnel).as_dict() == {"read:binary": 1, "rule:min_chars": 6}
    assert corpus_drops(funnel).total == 7

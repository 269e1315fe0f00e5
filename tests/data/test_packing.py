"""Packing known answers and tokenize_and_pack on a small corpus with the real SmolLM2 tokenizer."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastdraft_dag.core import shards
from fastdraft_dag.data.packing import (
    check_roundtrip,
    doc_separator_id,
    pack,
    split_of,
    tokenize_and_pack,
)

SEQ_LEN, PER_SHARD, VAL = 32, 8, 0.2
MARKER = re.compile(r"@(\d+)@")


def test_pack_known_answer() -> None:
    seqs = list(pack([[1, 2, 3], [4, 5], [6], [7]], seq_len=3, sep_id=0))
    # stream: 1 2 3 | 0 4 5 | 0 6 0 | 7 0  (the partial tail is dropped)
    assert [s.tolist() for s in seqs] == [[1, 2, 3], [0, 4, 5], [0, 6, 0]]
    assert list(pack([], 4, 0)) == [] and list(pack([[1, 2]], 4, 0)) == []


def test_pack_long_document_spans_sequences() -> None:
    seqs = list(pack([list(range(1, 8))], seq_len=4, sep_id=9))
    assert [s.tolist() for s in seqs] == [[1, 2, 3, 4], [5, 6, 7, 9]]


def test_doc_separator_id(tokenizer) -> None:
    assert doc_separator_id(tokenizer) == tokenizer.get_vocab()["<|endoftext|>"]
    fake = SimpleNamespace(get_vocab=lambda: {"a": 0}, eos_token_id=7)
    assert doc_separator_id(fake) == 7


def test_broken_tokenizer_is_refused(tmp_path: Path) -> None:
    class Lossy:
        def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
            return {"input_ids": [ord(c) for c in text if c != " "]}

        def decode(self, ids: list[int]) -> str:
            return "".join(map(chr, ids))

    with pytest.raises(ValueError, match="does not round-trip"):
        check_roundtrip(Lossy(), tmp_path)


def test_split_of_is_deterministic_and_proportional() -> None:
    ids = [f"doc/{i}" for i in range(10_000)]
    splits = [split_of(i, 0.1) for i in ids]
    assert splits == [split_of(i, 0.1) for i in ids]
    assert 0.08 < splits.count("validation") / len(ids) < 0.12
    assert {split_of(i, 0.0) for i in ids} == {"train"}


def synthetic_corpus(path: Path) -> Path:
    rows = [
        {
            "id": f"prose/{i:03d}",
            "source": "prose",
            "domain": "text",
            "text": f"@{i}@ Document {i} tells a short story. It ends here, @{i}@.",
        }
        for i in range(150)
    ]
    rows += [
        {
            "id": f"code/{i:03d}",
            "source": "code",
            "domain": "code",
            "text": f"# @{1000 + i}@\ndef f{i}(x):\n    return x + {i}\n",
        }
        for i in range(80)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, target_dir: Path) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pack")
    corpus = synthetic_corpus(root / "corpus.parquet")
    out = root / "shards"
    index = tokenize_and_pack(
        corpus,
        target_dir,
        out,
        seq_len=SEQ_LEN,
        seqs_per_shard=PER_SHARD,
        val_fraction=VAL,
        batch_size=16,
    )
    return out, index


def test_index_is_consistent(packed: tuple[Path, dict], target_dir: Path, tokenizer) -> None:
    out, index = packed
    assert index == shards.read_index(out)
    assert index["seq_len"] == SEQ_LEN and index["dtype"] == "<u2"
    assert index["vocab_size"] == len(tokenizer) and index["eos_id"] == doc_separator_id(tokenizer)
    digest = hashlib.sha256((target_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert index["tokenizer_sha256"] == digest
    assert (out / "tokenizer" / "tokenizer.json").read_bytes() == (
        target_dir / "tokenizer.json"
    ).read_bytes()
    assert index["documents"]["text"]["train"] + index["documents"]["text"]["validation"] == 150
    assert index["documents"]["code"]["train"] + index["documents"]["code"]["validation"] == 80
    for domain in ("text", "code"):
        for split in ("train", "validation"):
            entries = [e for e in index["shards"] if (e["domain"], e["split"]) == (domain, split)]
            assert all(e["num_seqs"] <= PER_SHARD for e in entries)
            n_seqs = sum(e["num_seqs"] for e in entries)
            assert index["tokens"][domain][split] == n_seqs * SEQ_LEN
            assert shards.load_split(out, domain, split).shape == (n_seqs, SEQ_LEN)
        assert index["tokens"][domain]["validation"] > 0
    shards.verify_shards(out)


def markers(tokenizer, seqs: np.ndarray) -> set[int]:
    """Doc markers seen whole in the sequences (a marker cut at a boundary does not match)."""
    return {int(m) for s in seqs for m in MARKER.findall(tokenizer.decode(s.tolist()))}


def test_validation_docs_never_in_train(packed: tuple[Path, dict], tokenizer) -> None:
    out, _ = packed
    for domain, offset, n in (("text", 0, 150), ("code", 1000, 80)):
        train = markers(tokenizer, shards.load_split(out, domain, "train"))
        val = markers(tokenizer, shards.load_split(out, domain, "validation"))
        assert val and not train & val
        prefix = "prose" if domain == "text" else "code"
        expected_val = {
            offset + i for i in range(n) if split_of(f"{prefix}/{i:03d}", VAL) != "train"
        }
        assert val <= expected_val


def test_same_input_gives_identical_bytes(packed: tuple[Path, dict], target_dir: Path) -> None:
    out, index = packed
    again = out.parent / "again"
    index2 = tokenize_and_pack(
        out.parent / "corpus.parquet",
        target_dir,
        again,
        seq_len=SEQ_LEN,
        seqs_per_shard=PER_SHARD,
        val_fraction=VAL,
        batch_size=7,
    )
    assert index2 == index
    for entry in index["shards"]:
        assert (again / entry["file"]).read_bytes() == (out / entry["file"]).read_bytes()


def test_max_tokens_stops_a_domain(packed: tuple[Path, dict], target_dir: Path) -> None:
    out, full = packed
    budget = 2 * SEQ_LEN
    index = tokenize_and_pack(
        out.parent / "corpus.parquet",
        target_dir,
        out.parent / "capped",
        seq_len=SEQ_LEN,
        seqs_per_shard=PER_SHARD,
        val_fraction=VAL,
        max_tokens={"code": budget},
        batch_size=8,
    )
    assert budget <= index["tokens"]["code"]["train"] < full["tokens"]["code"]["train"]
    assert index["tokens"]["text"] == full["tokens"]["text"]


def test_corrupted_shard_is_refused(packed: tuple[Path, dict], tmp_path: Path) -> None:
    out, index = packed
    copy = tmp_path / "shards"
    shutil.copytree(out, copy)
    entry = next(e for e in index["shards"] if e["domain"] == "text" and e["split"] == "train")
    path = copy / entry["file"]
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(shards.ShardChecksumError, match=re.escape(entry["file"])):
        shards.load_split(copy, "text", "train", verify=True)
    assert shards.load_split(copy, "code", "train", verify=True).shape[0] > 0


def test_encode_batch_matches_the_tokenizer(tokenizer) -> None:
    from fastdraft_dag.data.packing import encode_batch

    texts = ["In the beginning, x = 1.", "    def f(y):\n        return y  # done\n", "é ü 中文"]
    assert encode_batch(tokenizer, texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]


def test_mix_sets_domain_budgets() -> None:
    import dataclasses

    from fastdraft_dag.config.presets import DEFAULT, ProfileError, ShardsConfig

    shards_cfg = ShardsConfig(max_train_tokens=1000, mix={"text": 0.4, "code": 0.6})
    assert shards_cfg.budgets() == {"text": 400, "code": 600}
    assert ShardsConfig(max_tokens={"code": 5}).budgets() == {"code": 5}
    for bad in ({"text": 0.5, "code": 0.6}, {"text": 0.5, "poetry": 0.5}):
        profile = dataclasses.replace(DEFAULT, shards=ShardsConfig(max_train_tokens=10, mix=bad))
        with pytest.raises(ProfileError, match="shards.mix"):
            profile.validate()

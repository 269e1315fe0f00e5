"""Tokenize a filtered corpus with the target's tokenizer and pack it into fixed-length shards.

Documents, not sequences, are assigned to train or validation (by a hash of their id), so no text
of a validation document is ever trained on, and the assignment survives re-runs, reordering and
new documents. Documents are concatenated, each followed by a separator token, and cut into
`seq_len` windows: no padding, so every token trained on is real.

The shard layout and index are those of `fastdraft_dag.core.shards`; the tokenizer files are copied
next to the shards so a trainer (or a check) can prove it uses the same tokenizer as the target.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
from tqdm import tqdm

from fastdraft_dag.core import shards
from fastdraft_dag.core.files import sha256_file

DOMAINS = ("text", "code")
SPLITS = ("train", "validation")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
DOC_SEPARATOR = "<|endoftext|>"


def doc_separator_id(tokenizer: Any) -> int:
    """`<|endoftext|>` where the vocab has it: chat models use eos to end a turn, not a doc."""
    vocab = tokenizer.get_vocab()
    if DOC_SEPARATOR in vocab:
        return int(vocab[DOC_SEPARATOR])
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has neither <|endoftext|> nor an eos token to separate docs")
    return int(tokenizer.eos_token_id)


ROUNDTRIP_SAMPLE = "In the beginning, x = 1.\n    def f(y):\n        return y  # done\n"


def check_roundtrip(tokenizer: Any, where: Path) -> None:
    """Refuse a tokenizer that loses text: a mis-declared class (e.g. a GGUF-converted byte-level
    BPE loaded as CodeLlamaTokenizer) maps every space to unk and silently ruins the shards."""
    ids = tokenizer(ROUNDTRIP_SAMPLE, add_special_tokens=False)["input_ids"]
    back = tokenizer.decode(ids)
    if back != ROUNDTRIP_SAMPLE:
        raise ValueError(
            f"tokenizer {str(where)!r} ({type(tokenizer).__name__}) does not round-trip text: "
            f"{ROUNDTRIP_SAMPLE!r} -> {back!r}"
        )


def split_of(doc_id: str, val_fraction: float) -> str:
    """Deterministic per-document split, salted apart from the held-out bucket of `sources`."""
    digest = hashlib.sha256(f"validation:{doc_id}".encode()).digest()
    return "validation" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


class Packer:
    """Push-style packer: feed documents, get back the full sequences they complete."""

    def __init__(self, seq_len: int, sep_id: int) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        self.seq_len, self.sep_id = seq_len, sep_id
        self.buffer: list[int] = []

    def add(self, tokens: list[int]) -> list[np.ndarray]:
        self.buffer.extend(tokens)
        self.buffer.append(self.sep_id)
        n_full = len(self.buffer) // self.seq_len
        if not n_full:
            return []
        cut = n_full * self.seq_len
        full = np.asarray(self.buffer[:cut], dtype=np.int64).reshape(n_full, self.seq_len)
        del self.buffer[:cut]
        return list(full)


def pack(token_lists: Iterable[list[int]], seq_len: int, sep_id: int) -> Iterator[np.ndarray]:
    """Concatenate docs (each followed by `sep_id`), yield full `seq_len` windows, drop the tail."""
    packer = Packer(seq_len, sep_id)
    for tokens in token_lists:
        yield from packer.add(tokens)


class ShardWriter:
    """Collects sequences of one (domain, split) and writes a shard every `seqs_per_shard`."""

    def __init__(self, root: Path, domain: str, split: str, per_shard: int, dtype: np.dtype):
        self.root, self.domain, self.split = root, domain, split
        self.per_shard, self.dtype = per_shard, dtype
        self.pending: list[np.ndarray] = []
        self.entries: list[dict[str, Any]] = []
        self.tokens = 0

    def add(self, seqs: list[np.ndarray]) -> None:
        self.pending.extend(seqs)
        self.tokens += sum(len(s) for s in seqs)
        while len(self.pending) >= self.per_shard:
            self._write(self.pending[: self.per_shard])
            del self.pending[: self.per_shard]

    def close(self) -> None:
        if self.pending:
            self._write(self.pending)
            self.pending = []

    def _write(self, seqs: list[np.ndarray]) -> None:
        arr = np.stack(seqs).astype(self.dtype)
        n = len(self.entries)
        self.entries.append(shards.write_shard(self.root, self.domain, self.split, n, arr))


def copy_tokenizer(tokenizer_dir: Path, out_dir: Path) -> Path:
    """Ship the tokenizer with the shards: later steps compare it with the target's."""
    dest = out_dir / "tokenizer"
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, dest / name)
    return dest


def encode_batch(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of a batch, in parallel in the Rust tokenizer, without offsets or masks.

    `encode_batch_fast` skips the character offsets that `tokenizer(texts)` computes and we never
    use: 2.7x faster on the stdlib code (benchmarks/data_throughput.py). Same ids (tested).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]


def _domain_batches(
    corpus: ds.Dataset, domain: str, batch_size: int
) -> Iterator[tuple[list[str], list[str]]]:
    scanner = corpus.scanner(
        columns=["id", "text"], filter=ds.field("domain") == domain, batch_size=batch_size
    )
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield batch.column("id").to_pylist(), batch.column("text").to_pylist()


def _encoded_ahead(
    tokenizer: Any, batches: Iterator[tuple[list[str], list[str]]]
) -> Iterator[tuple[list[str], list[list[int]]]]:
    """(ids, token ids) per batch, the next batch tokenizing while this one is packed.

    The Rust tokenizer releases the GIL, so packing and shard writing overlap with it.
    """
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for ids, texts in batches:
            future = pool.submit(encode_batch, tokenizer, texts)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (ids, future)
        if pending is not None:
            yield pending[0], pending[1].result()


def _pack_domain(
    corpus: ds.Dataset,
    domain: str,
    tokenizer: Any,
    writers: dict[str, ShardWriter],
    settings: dict[str, Any],
) -> dict[str, int]:
    """Tokenize, route and pack one domain; stop once its train-token budget is met."""
    packers = {s: Packer(settings["seq_len"], settings["sep_id"]) for s in SPLITS}
    docs = dict.fromkeys(SPLITS, 0)
    budget = settings["max_tokens"].get(domain)
    total = corpus.count_rows(filter=ds.field("domain") == domain)
    batches = _domain_batches(corpus, domain, settings["batch_size"])
    with tqdm(total=total, desc=f"tokenize {domain}", unit="doc") as bar:
        for ids, encoded in _encoded_ahead(tokenizer, batches):
            for doc_id, tokens in zip(ids, encoded, strict=True):
                split = split_of(doc_id, settings["val_fraction"])
                docs[split] += 1
                writers[split].add(packers[split].add(tokens))
            bar.update(len(ids))
            if budget is not None and writers["train"].tokens >= budget:
                break
    for writer in writers.values():
        writer.close()
    return docs


def tokenize_and_pack(
    corpus_parquet: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    seq_len: int,
    seqs_per_shard: int,
    val_fraction: float,
    max_tokens: dict[str, int] | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Write checksummed shards per (domain, split) plus `index.json`; return the index.

    A domain stops at the first batch that brings its train tokens to `max_tokens[domain]`, so the
    budget is met to within one batch; token counts in the index are those actually written.
    """
    from transformers import AutoTokenizer  # heavy; only this step needs it

    tokenizer_dir, out_dir = Path(tokenizer_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [out_dir / d for d in DOMAINS] + [out_dir / "tokenizer"]:
        shutil.rmtree(stale, ignore_errors=True)  # shards of an earlier, larger run
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    check_roundtrip(tokenizer, tokenizer_dir)
    vocab_size = len(tokenizer)
    dtype = shards.token_dtype(vocab_size)
    settings = {
        "seq_len": seq_len,
        "sep_id": doc_separator_id(tokenizer),
        "val_fraction": val_fraction,
        "max_tokens": max_tokens or {},
        "batch_size": batch_size,
    }
    corpus = ds.dataset(str(corpus_parquet), format="parquet")
    entries: list[dict[str, Any]] = []
    tokens: dict[str, dict[str, int]] = {}
    documents: dict[str, dict[str, int]] = {}
    for domain in DOMAINS:
        writers = {s: ShardWriter(out_dir, domain, s, seqs_per_shard, dtype) for s in SPLITS}
        documents[domain] = _pack_domain(corpus, domain, tokenizer, writers, settings)
        tokens[domain] = {s: w.tokens for s, w in writers.items()}
        entries += [e for w in writers.values() for e in w.entries]
    copy_tokenizer(tokenizer_dir, out_dir)
    index = {
        "seq_len": seq_len,
        "dtype": dtype.str,
        "eos_id": settings["sep_id"],
        "vocab_size": vocab_size,
        "tokenizer_sha256": sha256_file(tokenizer_dir / "tokenizer.json"),
        "shards": entries,
        "tokens": tokens,
        "documents": documents,
    }
    shards.write_index(out_dir, index)
    return shards.read_index(out_dir)

"""The on-disk format of tokenized shards, shared by the writer and the trainer.

Only numpy here: the trainer imports this module from its own environment (the Gaudi stack pins
other torch/transformers versions), so it must not pull in anything heavier.

Layout of a shards directory:
    index.json                      format, seq_len, dtype, eos_id, vocab_size, shards[], tokens{}
    <domain>/<split>-<n:05d>.bin    raw little-endian token ids, shape (num_seqs, seq_len)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from fastdraft_dag.core.files import sha256_file, write_bytes_atomic, write_json_atomic

FORMAT = "fastdraft-shards/1"


class ShardChecksumError(ValueError):
    """A shard's bytes do not match the checksum in its index; the message names the shard."""


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def write_shard(root: Path, domain: str, split: str, n: int, seqs: np.ndarray) -> dict[str, Any]:
    """Write one shard atomically and return its index entry."""
    rel = f"{domain}/{split}-{n:05d}.bin"
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(seqs).tobytes()
    write_bytes_atomic(path, data, unique=False)
    return {
        "file": rel,
        "domain": domain,
        "split": split,
        "num_seqs": int(seqs.shape[0]),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def write_index(root: Path, index: dict[str, Any]) -> None:
    index = {"format": FORMAT, **index}
    write_json_atomic(Path(root) / "index.json", index, sort_keys=False, default=None, unique=False)


def read_index(root: Path) -> dict[str, Any]:
    path = Path(root) / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"shards {str(root)!r}: no index.json")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"shards {str(path)!r}: format {index.get('format')!r}, expected {FORMAT}")
    return index


def verify_shards(root: Path, index: dict[str, Any] | None = None) -> None:
    """Refuse corrupted data before any compute is spent on it."""
    index = index or read_index(root)
    for entry in index["shards"]:
        path = Path(root) / entry["file"]
        digest = sha256_file(path) if path.is_file() else "missing"
        if digest != entry["sha256"]:
            raise ShardChecksumError(
                f"shard {str(path)!r}: sha256 {digest} does not match index {entry['sha256']}"
            )


def load_split(root: Path, domain: str, split: str, verify: bool = True) -> np.ndarray:
    """All sequences of one domain and split as an array (num_seqs, seq_len), memory-mapped."""
    index = read_index(root)
    entries = [e for e in index["shards"] if e["domain"] == domain and e["split"] == split]
    if verify:
        verify_shards(root, {"shards": entries})
    dtype = np.dtype(index["dtype"])
    parts = [
        np.memmap(Path(root) / e["file"], dtype=dtype, mode="r").reshape(-1, index["seq_len"])
        for e in entries
    ]
    if not parts:
        return np.zeros((0, index["seq_len"]), dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)

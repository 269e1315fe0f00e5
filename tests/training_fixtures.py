"""Tiny training inputs built in a few seconds: a 512-word target, Markov shards, SFT arrays.

Shared by the trainer tests; the data is learnable in a few dozen steps, so losses must fall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fastdraft_dag.core import shards

VOCAB, SEQ_LEN = 512, 64
REPO = Path(__file__).resolve().parents[1]


def write_small_target(root: Path) -> Path:
    """A word-level tokenizer + config: the draft's vocabulary source, 512 tokens."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    root.mkdir(parents=True, exist_ok=True)
    words = ["<unk>", "<s>", "</s>", *[f"w{i}" for i in range(3, VOCAB)]]
    Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")).save(
        str(root / "tokenizer.json")
    )
    (root / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>"})
    )
    config = {"model_type": "llama", "vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2,
              "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))
    return root


def markov_sequences(rng: np.random.Generator, n: int, mult: int) -> np.ndarray:
    """Mostly-deterministic token chains: learnable in a few steps, so the loss must fall."""
    seqs = np.empty((n, SEQ_LEN), dtype=np.uint16)
    seqs[:, 0] = rng.integers(3, VOCAB, size=n)
    for t in range(1, SEQ_LEN):
        nxt = 3 + ((seqs[:, t - 1].astype(np.int64) - 3) * mult + 1) % (VOCAB - 3)
        noise = rng.random(n) < 0.1
        seqs[:, t] = np.where(noise, rng.integers(3, VOCAB, size=n), nxt)
    return seqs


def write_shards(root: Path) -> Path:
    rng = np.random.default_rng(0)
    entries = [
        shards.write_shard(root, domain, split, 0, markov_sequences(rng, n, mult))
        for domain, mult in (("text", 7), ("code", 11))
        for split, n in (("train", 256), ("validation", 32))
    ]
    shards.write_index(root, {"seq_len": SEQ_LEN, "dtype": "<u2", "eos_id": 2,
                              "vocab_size": VOCAB, "shards": entries, "tokens": {}})  # fmt: skip
    return root


def write_sft(path: Path, n: int = 64) -> Path:
    """Noise prompts (masked) + a response that copies the prompt's last token, right-padded."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split, rows in (("train", n), ("val", 16)):
        ids = np.full((rows, 32), 2, dtype=np.int32)
        labels = np.full((rows, 32), -100, dtype=np.int64)
        mask = np.zeros((rows, 32), dtype=np.int64)
        for r in range(rows):
            p, a = int(rng.integers(4, 12)), int(rng.integers(4, 12))
            prompt = rng.integers(3, VOCAB, size=p)
            ids[r, : p + a] = np.concatenate([prompt, np.full(a, prompt[-1])])
            labels[r, p : p + a] = ids[r, p : p + a]
            mask[r, : p + a] = 1
        arrays |= {f"{split}_input_ids": ids, f"{split}_labels": labels,
                   f"{split}_attention_mask": mask}  # fmt: skip
    np.savez(path, **arrays)
    return path


def make_spec(ws: dict[str, Path], out: Path, pretrain_steps: int = 30) -> dict:
    common = {"batch_size": 8, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 3, "eval_batches": 2}
    return {
        "backend": "cpu", "init_dir": str(ws["init"]), "out_dir": str(out), "threads": 1,
        "dtype": "fp32", "seed": 0,
        "stages": [
            {"name": "pretrain", "steps": pretrain_steps, "eval_every": 10, **common,
             "data": {"kind": "packed", "root": str(ws["shards"]), "mix": {"text": 1.0}}},
            {"name": "continued", "steps": 10, **common,
             "data": {"kind": "packed", "root": str(ws["shards"]),
                      "mix": {"code": 0.5, "text": 0.5}}},
            {"name": "align", "steps": 10, **common,
             "data": {"kind": "sft", "path": str(ws["sft"])}},
        ],
    }  # fmt: skip


def entry_command(spec_path: Path) -> list[str]:
    return [sys.executable, "-m", "fastdraft_dag.training.run", "--spec", str(spec_path)]


def start_trainer(spec: dict, tmp: Path, name: str = "spec.json", **popen) -> subprocess.Popen:
    """The real entry point in its own process (one torch thread, like the resource sets)."""
    spec_path = tmp / name
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        entry_command(spec_path), cwd=REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen,
    )  # fmt: skip


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until `condition` holds; fail early if the process exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited ({proc.returncode}) first: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the trainer")
        time.sleep(0.02)


def train_rows(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


def assert_same_run(out: Path, ref: Path, rtol: float) -> None:
    """Same loss at every step, same validation loss, same final weights."""
    got, want = train_rows(out), train_rows(ref)
    assert [r["global_step"] for r in got] == [r["global_step"] for r in want]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=rtol)
    m_got, m_want = (json.loads((p / "metrics.json").read_text()) for p in (out, ref))
    assert m_got["val_loss"] == pytest.approx(m_want["val_loss"], rel=rtol)
    w_got, w_want = (load_file(p / "model.safetensors") for p in (out, ref))
    for name, tensor in w_want.items():
        torch.testing.assert_close(w_got[name], tensor, rtol=rtol, atol=rtol)

"""Training data for the trainer: packed token shards, SFT arrays, and mixes of both, drawn as
global batches.

A step's rows are chosen once, as a *plan* over the whole global batch (batch_size x grad_accum
rows), from one seeded numpy Generator that every process holds in the same state. Each process
then materialises only its own slice of each micro-batch. So 1 process and N processes see the
same rows in the same step, the loss is normalised by the same global token count, and the loss
curves agree; and the Generator state is the whole "data position" a checkpoint has to keep.

Only numpy and torch here (plus `shards`, numpy-only): this module runs in the Gaudi env too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdraft_dag.core.shards import load_split, read_index
from fastdraft_dag.training.errors import TrainingError

Batch = dict[str, torch.Tensor]
IGNORE = -100


TEACHER_KEYS = ("teacher_ids", "teacher_logp")


class DataError(TrainingError):
    """Training data that cannot be used; the message names the file or setting."""


class PackedData:
    """Fixed-length token sequences from shards; each row picks its domain by the mix weights."""

    def __init__(self, root: str, mix: dict[str, float]) -> None:
        self.domains = [d for d, w in mix.items() if w > 0]
        if not self.domains:
            raise DataError(f"packed data {root!r}: mix {mix} has no positive weight")
        weights = np.array([mix[d] for d in self.domains], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.index = read_index(Path(root))
        self.train = {d: load_split(Path(root), d, "train", verify=True) for d in self.domains}
        self.val = {d: load_split(Path(root), d, "validation", verify=True) for d in self.domains}
        for domain, arr in self.train.items():
            if len(arr) == 0:
                raise DataError(f"packed data {root!r}: domain {domain!r} has no train split")

    @property
    def seq_len(self) -> int:
        return int(self.index["seq_len"])

    @property
    def max_token_id(self) -> int:
        return int(self.index["vocab_size"]) - 1

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """A plan of n rows: (domain index, row index) pairs."""
        picks = rng.choice(len(self.domains), size=n, p=self.weights)
        rows = [rng.integers(len(self.train[self.domains[k]])) for k in picks]
        return np.stack([picks, np.array(rows, dtype=np.int64)], axis=1)

    def batch(self, plan: np.ndarray) -> Batch:
        rows = [self.train[self.domains[k]][r] for k, r in plan]
        ids = torch.from_numpy(np.stack(rows).astype(np.int64))
        return {"input_ids": ids, "labels": ids}

    def loss_tokens(self, plan: np.ndarray) -> int:
        """Positions that carry a next-token target: every position but the last of each row."""
        return len(plan) * (self.seq_len - 1)

    def sample(self, rng: np.random.Generator, n: int) -> Batch:
        return self.batch(self.draw(rng, n))

    def val_batches(self, batch_size: int, n: int) -> Iterator[tuple[str, Batch]]:
        """The first n batches of each domain's validation split: the same every evaluation."""
        for domain in self.domains:
            arr = self.val[domain]
            for i in range(min(n, math.ceil(len(arr) / batch_size))):
                ids = torch.from_numpy(arr[i * batch_size : (i + 1) * batch_size].astype(np.int64))
                yield domain, {"input_ids": ids, "labels": ids}

    def domain_weight(self, domain: str) -> float:
        return float(self.weights[self.domains.index(domain)])


class SftData:
    """Prompt + target response rows, right-padded; labels are -100 on prompt and padding."""

    KEYS = ("input_ids", "labels", "attention_mask")

    def __init__(self, path: str) -> None:
        with np.load(path) as z:
            missing = [
                f"{s}_{k}" for s in ("train", "val") for k in self.KEYS if f"{s}_{k}" not in z
            ]
            if missing:
                raise DataError(f"sft data {path!r}: missing arrays {missing}")
            self.train = {k: np.asarray(z[f"train_{k}"], dtype=np.int64) for k in self.KEYS}
            self.val = {k: np.asarray(z[f"val_{k}"], dtype=np.int64) for k in self.KEYS}
            # The target's top-k per label position (distill/teacher_logits.py), train rows only.
            self.train |= {k: z[f"train_{k}"] for k in TEACHER_KEYS if f"train_{k}" in z}
        self._row_loss_tokens = (self.train["labels"][:, 1:] != IGNORE).sum(axis=1)
        empty = np.flatnonzero(self._row_loss_tokens == 0)
        if len(self.train["labels"]) == 0 or len(empty):
            raise DataError(f"sft data {path!r}: no rows, or rows {empty[:5]} with no loss tokens")
        self.domains = ["sft"]

    @property
    def seq_len(self) -> int:
        return int(self.train["input_ids"].shape[1])

    @property
    def max_token_id(self) -> int:
        return int(max(self.train["input_ids"].max(), self.val["input_ids"].max(initial=0)))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(len(self.train["input_ids"]), size=n)

    def rows(self, plan: np.ndarray) -> Batch:
        """The planned rows at the full padded width (what a mixed batch lays out)."""
        return {k: torch.from_numpy(self.train[k][plan]) for k in self.KEYS}

    def batch(self, plan: np.ndarray) -> Batch:
        return _crop({k: v[plan] for k, v in self.train.items()})

    def loss_tokens(self, plan: np.ndarray) -> int:
        return int(self._row_loss_tokens[plan].sum())

    def sample(self, rng: np.random.Generator, n: int) -> Batch:
        return self.batch(self.draw(rng, n))

    def val_batches(self, batch_size: int, n: int) -> Iterator[tuple[str, Batch]]:
        total = len(self.val["input_ids"])
        for i in range(min(n, math.ceil(total / batch_size))):
            idx = np.arange(i * batch_size, min(total, (i + 1) * batch_size))
            yield "sft", _crop({k: self.val[k][idx] for k in self.KEYS})

    def domain_weight(self, domain: str) -> float:
        return 1.0


def _crop(arrays: dict[str, np.ndarray]) -> Batch:
    """Rows cut to the longest one in the batch: the padding after it is never computed.

    Rows are right-padded and attention is causal, so dropping trailing all-padding columns
    changes no logit and no label; an SFT batch of 8 answers padded to 512 is mostly padding.
    """
    width = max(int(arrays["attention_mask"].sum(axis=1).max()), 2)
    return {k: torch.from_numpy(np.ascontiguousarray(v[:, :width])) for k, v in arrays.items()}


def _as_sft(batch: Batch, width: int) -> Batch:
    """Any part's batch in the SFT shape: `width` columns, labels -100 and mask 0 on padding.

    Packed rows have no attention mask (every position counts); rows longer than `width` are
    cut, shorter ones right-padded (causal attention: padding after a row never changes it).
    """
    ids, labels = batch["input_ids"][:, :width], batch["labels"][:, :width]
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask[:, :width].long()
    pad = width - ids.shape[1]
    if pad > 0:
        ids = torch.nn.functional.pad(ids, (0, pad), value=0)
        labels = torch.nn.functional.pad(labels, (0, pad), value=IGNORE)
        mask = torch.nn.functional.pad(mask, (0, pad), value=0)
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class MixedData:
    """Several data parts in one stage, e.g. KD rows plus a share of pre-training sequences.

    Spec: `{"kind": "mixed", "parts": [{"weight": 0.9, "kind": "sft", ...}, {"weight": 0.1,
    "kind": "packed", ...}]}`. The plan draws each row's part from the same seeded Generator as
    everything else (then the rows within each part, part by part), so it stays one global-batch
    plan: a row of the plan is `(part, a, b)`, where `(a, b)` is that part's own plan row. Every
    batch has the SFT shape (`_as_sft`), as wide as the widest SFT part (packed rows are cut or
    padded to it). Validation reports each part's domains as `<part name>/<domain>`, weighted by
    the part weights.
    """

    def __init__(self, parts: list[dict[str, Any]]) -> None:
        if not parts:
            raise DataError("mixed data: 'parts' is empty")
        self.names, self.parts, weights = [], [], []
        for i, raw in enumerate(parts):
            raw = dict(raw)
            name, weight = raw.pop("name", f"part{i}"), float(raw.pop("weight", 0.0))
            if "/" in str(name) or name in self.names:
                raise DataError(f"mixed data: part name {name!r} is repeated or contains '/'")
            if raw.get("kind") == "mixed":
                raise DataError(f"mixed data: part {name!r} is itself mixed (not supported)")
            if weight < 0:
                raise DataError(f"mixed data: part {name!r} has negative weight {weight}")
            if weight > 0:
                self.names.append(name)
                self.parts.append(open_data(raw))
                weights.append(weight)
        if not self.parts:
            raise DataError(f"mixed data: no part has a positive weight ({parts})")
        self.weights = np.array(weights, dtype=np.float64) / sum(weights)
        self.domains = [
            f"{n}/{d}" for n, p in zip(self.names, self.parts, strict=True) for d in p.domains
        ]

    @property
    def seq_len(self) -> int:
        sft = [p.seq_len for p in self.parts if isinstance(p, SftData)]
        return max(sft or [p.seq_len for p in self.parts])

    @property
    def max_token_id(self) -> int:
        return max(p.max_token_id for p in self.parts)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        picks = rng.choice(len(self.parts), size=n, p=self.weights)
        plan = np.zeros((n, 3), dtype=np.int64)
        plan[:, 0] = picks
        for k, part in enumerate(self.parts):
            where = np.flatnonzero(picks == k)
            if len(where):
                sub = part.draw(rng, len(where)).reshape(len(where), -1)
                plan[where, 1 : 1 + sub.shape[1]] = sub
        return plan

    def _sub(self, k: int, rows: np.ndarray) -> np.ndarray:
        """Part k's own plan rows back from the mixed plan (SFT plans are 1-D)."""
        return rows[:, 1] if isinstance(self.parts[k], SftData) else rows[:, 1:3]

    def batch(self, plan: np.ndarray) -> Batch:
        width = self.seq_len
        out = {
            "input_ids": torch.zeros((len(plan), width), dtype=torch.long),
            "labels": torch.full((len(plan), width), IGNORE, dtype=torch.long),
            "attention_mask": torch.zeros((len(plan), width), dtype=torch.long),
        }
        for k, part in enumerate(self.parts):
            where = np.flatnonzero(plan[:, 0] == k)
            if len(where):
                rows = self._sub(k, plan[where])
                raw = part.rows(rows) if isinstance(part, SftData) else part.batch(rows)
                sub = _as_sft(raw, width)
                for key, value in sub.items():
                    out[key][torch.from_numpy(where)] = value.long()
        return out

    def loss_tokens(self, plan: np.ndarray) -> int:
        total = 0
        for k, part in enumerate(self.parts):
            rows = plan[plan[:, 0] == k]
            if not len(rows):
                continue
            if isinstance(part, SftData):
                total += part.loss_tokens(self._sub(k, rows))
            else:  # packed: every position of the (possibly cut) row but the last
                total += len(rows) * (min(part.seq_len, self.seq_len) - 1)
        return total

    def sample(self, rng: np.random.Generator, n: int) -> Batch:
        return self.batch(self.draw(rng, n))

    def val_batches(self, batch_size: int, n: int) -> Iterator[tuple[str, Batch]]:
        for name, part in zip(self.names, self.parts, strict=True):
            for domain, batch in part.val_batches(batch_size, n):
                yield f"{name}/{domain}", _as_sft(batch, self.seq_len)

    def domain_weight(self, domain: str) -> float:
        name, inner = domain.split("/", 1)
        k = self.names.index(name)
        return float(self.weights[k]) * self.parts[k].domain_weight(inner)


class TrimmedLabels:
    """Any data, its labels mapped to a trimmed head's rows (draft/derived.py).

    Inputs stay full-vocabulary ids (the embedding is full); a label the head dropped becomes
    -100, so it adds no loss but still counts in the normaliser (`loss_tokens` reads the plan):
    the loss is per position of the response, as for an untrimmed draft.
    """

    def __init__(self, data: PackedData | SftData | MixedData, kept_ids: torch.Tensor, vocab: int):
        self.data = data
        self.table = torch.full((vocab,), IGNORE, dtype=torch.long)
        self.table[kept_ids] = torch.arange(len(kept_ids))

    def remap(self, batch: Batch) -> Batch:
        labels = batch["labels"]
        mapped = torch.where(labels == IGNORE, IGNORE, self.table[labels.clamp_min(0)])
        out = {**batch, "labels": mapped}
        if "teacher_ids" in batch:  # teacher ids the head dropped become -1 (its residual mass)
            out["teacher_ids"] = self.table[batch["teacher_ids"].long()].clamp_min(-1)
        return out

    def batch(self, plan: np.ndarray) -> Batch:
        return self.remap(self.data.batch(plan))

    def sample(self, rng: np.random.Generator, n: int) -> Batch:
        return self.batch(self.data.draw(rng, n))

    def val_batches(self, batch_size: int, n: int) -> Iterator[tuple[str, Batch]]:
        for name, batch in self.data.val_batches(batch_size, n):
            yield name, self.remap(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)


Data = PackedData | SftData | MixedData | TrimmedLabels


def open_data(spec: dict[str, Any]) -> Data:
    """Open (and checksum) a stage's data."""
    kind = spec.get("kind")
    if kind == "packed":
        return PackedData(spec["root"], spec["mix"])
    if kind == "sft":
        return SftData(spec["path"])
    if kind == "mixed":
        return MixedData(spec.get("parts") or [])
    raise DataError(f"data kind {kind!r}: expected 'packed', 'sft' or 'mixed'")


def local_slice(plan: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This process's contiguous share of a micro-batch plan (the caller checks divisibility)."""
    per = len(plan) // world
    return plan[rank * per : (rank + 1) * per]


def count_tokens(batch: Batch) -> int:
    """Tokens the model processed (padding excluded)."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """The Generator's state as JSON-able data (PCG64 state is plain ints)."""
    return rng.bit_generator.state


def restore_generator(state: dict[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng

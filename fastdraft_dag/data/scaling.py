"""Corpora of a chosen size for measuring the data path, and how its cost grows with size.

The offline corpora are ~50 MB; the `paper` profile means tens of GB. To measure growth without
a larger corpus, `grow_corpus` repeats the real documents with word-level perturbations: most
copies are near duplicates (a few words changed, Jaccard of 5-gram shingles ~0.8, so near-dedup
has real work), some are heavily rewritten (new documents as far as dedup can tell, so the kept
set grows too). `write_parts` dumps records as parquet files, the shape both our corpus build and
other pipelines read, and `growth_exponent` fits the log-log slope of cost against size.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fastdraft_dag.core.files import atomic_path
from fastdraft_dag.sources.readers import Record

NEAR_RATE = 0.02  # words changed in a near-duplicate copy: shingle Jaccard ~0.8 at n = 5
FAR_RATE = 0.35  # words changed in a rewritten copy: shingle Jaccard < 0.1, a new document
FAR_EVERY = 4  # every 4th copy is rewritten, the others are near duplicates


def perturb(text: str, rng: random.Random, rate: float) -> str:
    """`text` with about `rate` of its words replaced, deleted or duplicated.

    Replacement words come from the same document, so the copy keeps its language and passes the
    same quality rules as the original; lines are kept, so line-based rules see the same shape.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"perturb: rate {rate} must be in [0, 1]")
    lines = [line.split(" ") for line in text.split("\n")]
    vocab = [w for line in lines for w in line if w]
    if not vocab or rate == 0:
        return text
    out = []
    for line in lines:
        words: list[str] = []
        for w in line:
            r = rng.random()
            if not w or r >= rate:
                words.append(w)
            elif r < rate / 2:
                words.append(rng.choice(vocab))  # replace
            elif r < rate * 3 / 4:
                words += [w, w]  # duplicate
            # else: delete
        out.append(" ".join(words))
    return "\n".join(out)


def grow_corpus(records: Sequence[Record], target_bytes: int, seed: int = 0) -> Iterator[Record]:
    """The records, then perturbed copies of them, until `target_bytes` of text have been yielded.

    Copy k of a record has id `<id>~<k>`; deterministic for a seed, so two runs (or two tools)
    see the same corpus. Stops after the record that reaches `target_bytes`.
    """
    if not records:
        raise ValueError("grow_corpus: no records to grow from")
    rng, total, copy = random.Random(seed), 0, 0
    while True:
        for r in records:
            if copy == 0:
                text, rid = r["text"], r["id"]
            else:
                rate = FAR_RATE if copy % FAR_EVERY == 0 else NEAR_RATE
                text, rid = perturb(r["text"], rng, rate), f"{r['id']}~{copy}"
            yield {**r, "id": rid, "text": text}
            total += len(text.encode())
            if total >= target_bytes:
                return
        copy += 1


def write_parts(records: Iterable[Record], out_dir: Path, n_files: int) -> list[Path]:
    """Records as `n_files` parquet files (`id`, `text`), round-robin, each written atomically.

    Several files so that readers can fan out over workers; round-robin so that each file holds
    a similar mix. Files are named `part-00000.parquet`, ..., in `out_dir`.
    """
    if n_files < 1:
        raise ValueError(f"write_parts: n_files {n_files} must be >= 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    paths = [out_dir / f"part-{i:05d}.parquet" for i in range(n_files)]
    with ExitStack() as files:  # every part renamed into place when all are written
        tmps = [files.enter_context(atomic_path(p, unique=False)) for p in paths]
        writers = [pq.ParquetWriter(t, schema) for t in tmps]
        buffers: list[list[Record]] = [[] for _ in paths]
        try:
            for i, r in enumerate(records):
                buf = buffers[i % n_files]
                buf.append(r)
                if len(buf) >= 512:  # bounded memory: flush a row group
                    _flush(writers[i % n_files], buf, schema)
            for w, buf in zip(writers, buffers, strict=True):
                _flush(w, buf, schema)
        finally:
            for w in writers:
                w.close()
    return paths


def _flush(writer: pq.ParquetWriter, buf: list[Record], schema: pa.Schema) -> None:
    if buf:
        rows = {"id": [r["id"] for r in buf], "text": [r["text"] for r in buf]}
        writer.write_table(pa.table(rows, schema=schema))
        buf.clear()


def growth_exponent(sizes: Sequence[float], costs: Sequence[float]) -> float:
    """Least-squares slope of log(cost) against log(size): 1 is linear, < 1 sublinear.

    Needs at least two distinct positive sizes; a cost that is not positive cannot be fitted.
    """
    if len(sizes) != len(costs):
        raise ValueError(f"growth_exponent: {len(sizes)} sizes but {len(costs)} costs")
    if len(set(sizes)) < 2:
        raise ValueError(f"growth_exponent: need two distinct sizes, got {list(sizes)}")
    if min(sizes) <= 0 or min(costs) <= 0:
        raise ValueError(f"growth_exponent: sizes and costs must be > 0: {sizes}, {costs}")
    xs, ys = [math.log(s) for s in sizes], [math.log(c) for c in costs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
